import os
import shutil

import chex
import grain
import jax
import numpy as np
import pytest

from wm_jax.common import training
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models import Workdir, configs, run, world
from wm_jax.world_models.models.conv_vae import ConvVAE, vae_loss
from wm_jax.world_models.stages import vae
from wm_jax.world_models.workdir import fingerprint


def with_rollouts(source, workdir):
  shutil.copytree(Workdir(source).rollouts, Workdir(workdir).rollouts)
  return workdir


@pytest.fixture
def workdir(rollout_workdir, tmp_path):
  """A fresh workdir holding (a copy of) the session's collected rollouts."""
  return with_rollouts(rollout_workdir, str(tmp_path))


def batch_loss(config, params, frames):
  model = world.vae_model(config)
  reconstruction, mu, logvar = model.apply({'params': params}, frames, jax.random.key(0))
  return float(vae_loss(frames, reconstruction, mu, logvar, config.vae.kl_tolerance)[0])


def test_loss_falls_on_collected_frames(workdir, monkeypatch):
  config = configs.get('default:tiny')
  config.vae.num_steps = 40
  episodes = episodes_lib.open_episodes(Workdir(workdir).rollouts)
  frames = np.concatenate([episodes[i]['frames'] for i in range(4)])[:32]
  initial = vae.create_train_state(config, jax.random.PRNGKey(config.seed))
  monkeypatch.setattr(vae, 'train_step', chex.assert_max_traces(vae.train_step, n=1))
  results = vae.train_and_evaluate(config, workdir)  # Every step runs one compiled program.
  params = vae.restore_params(config, workdir)
  before, after = batch_loss(config, initial.params, frames), batch_loss(config, params, frames)
  assert after < 0.5 * before, (before, after)
  assert results['step'] == 40 and results['vae/loss'] > 0 and results['vae/images_per_s'] > 0
  assert os.path.exists(os.path.join(workdir, 'vae', 'reconstructions.png'))
  assert os.listdir(os.path.join(workdir, 'vae', 'tensorboard'))


class _Killed(Exception):
  pass


def test_killed_run_resumes_to_the_same_parameters(workdir, tmp_path_factory, monkeypatch):
  config = configs.get('default:tiny')  # 6 steps, a checkpoint every 2.
  straight_dir = with_rollouts(workdir, str(tmp_path_factory.mktemp('straight')))
  vae.train_and_evaluate(config, straight_dir)
  straight = vae.restore_params(config, straight_dir)

  real_frame_batches = vae.frame_batches

  def dies_after_five_batches(*args, **kwargs):
    dataset = real_frame_batches(*args, **kwargs)

    class Dying:
      def __iter__(self):
        iterator = iter(dataset)
        count = [0]

        class It(grain.DatasetIterator):  # Checkpointed by grain's orbax handler.
          def __next__(self):
            count[0] += 1
            if count[0] > 5:
              raise _Killed
            return next(iterator)
          def get_state(self):
            return iterator.get_state()

          def set_state(self, state):
            iterator.set_state(state)
        return It()
    return Dying()

  monkeypatch.setattr(vae, 'frame_batches', dies_after_five_batches)
  with pytest.raises(_Killed):
    vae.train_and_evaluate(config, workdir)
  monkeypatch.undo()
  manager = training.checkpoint_manager(Workdir(workdir).checkpoints('vae'),
                                      fingerprint(config, 'vae', checkpoints=True))
  assert manager.latest_step() in (2, 4)  # Died mid-run; resumes from its last checkpoint.
  assert vae.train_and_evaluate(config, workdir)['step'] == 6
  resumed = vae.restore_params(config, workdir)
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(straight)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_workdir_with_other_config_is_refused(workdir):
  config = configs.get('default:tiny')
  vae.train_and_evaluate(config, workdir)
  config.vae.model.z_size = 64
  with pytest.raises(ValueError,
                     match=r'different configuration:\n  vae\.model\.z_size: stored 32, config 64'):
    vae.train_and_evaluate(config, workdir)


def test_encode_stores_mu_logvar_series_and_initial_latents(workdir):
  config = configs.get('default:tiny')
  with pytest.raises(FileNotFoundError, match='Run the vae stage first'):
    run(config, workdir, ['encode'])
  results = run(config, workdir, ['vae', 'encode'])
  paths = Workdir(workdir)
  rollouts = episodes_lib.open_episodes(paths.rollouts)
  latents = episodes_lib.open_episodes(paths.latents())
  initial = np.load(paths.initial_latents)
  assert len(latents) == len(rollouts) == initial['mu'].shape[0] == results['encode']['episodes']
  model = ConvVAE(config.vae.model.z_size)
  params = vae.restore_params(config, workdir)
  for i in (0, len(rollouts) - 1):
    frames = rollouts[i]['frames']
    mu, logvar = model.apply({'params': params}, frames, method=ConvVAE.encode)
    np.testing.assert_allclose(latents[i]['mu'], mu, atol=1e-4)
    np.testing.assert_allclose(latents[i]['logvar'], logvar, atol=1e-4)
    np.testing.assert_array_equal(latents[i]['actions'], rollouts[i]['actions'])
    np.testing.assert_array_equal(latents[i]['dones'], rollouts[i]['dones'])
    np.testing.assert_allclose(initial['mu'][i], mu[0], atol=1e-4)

