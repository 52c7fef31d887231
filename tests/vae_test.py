import os
import shutil
import subprocess
import sys

import jax
import numpy as np
import pytest

from conftest import small_config
from wm_jax.data import episodes as episodes_lib
from wm_jax.data.collect import rollouts_path
from wm_jax.world_models.models.conv_vae import ConvVAE, vae_loss
from wm_jax.common import training
from wm_jax.world_models.stages import vae


@pytest.fixture
def workdir(rollout_workdir, tmp_path):
  """A fresh workdir holding (a copy of) the session's collected rollouts."""
  shutil.copytree(rollouts_path(rollout_workdir), rollouts_path(str(tmp_path)))
  return str(tmp_path)


def batch_loss(config, params, frames):
  model = vae.make_model(config)
  reconstruction, mu, logvar = model.apply({'params': params}, frames, jax.random.key(0))
  return float(vae_loss(frames, reconstruction, mu, logvar, config.vae.kl_tolerance)[0])


def test_loss_falls_on_collected_frames(workdir):
  config = small_config()
  config.vae.num_steps = 40
  episodes = episodes_lib.open_episodes(rollouts_path(workdir))
  frames = np.concatenate([episodes[i]['frames'] for i in range(4)])[:32]
  initial = vae.create_train_state(config, jax.random.PRNGKey(config.seed))
  state = vae.train_and_evaluate(config, workdir)
  before, after = batch_loss(config, initial.params, frames), batch_loss(config, state.params, frames)
  assert after < 0.5 * before, (before, after)
  assert int(state.step) == 40
  assert os.path.exists(os.path.join(workdir, 'vae', 'reconstructions.png'))
  assert os.listdir(os.path.join(workdir, 'vae', 'tensorboard'))


class _Killed(Exception):
  pass


def test_killed_run_resumes_to_the_same_parameters(workdir, tmp_path_factory, monkeypatch):
  config = small_config()  # 6 steps, a checkpoint every 2.
  straight_dir = str(tmp_path_factory.mktemp('straight'))
  shutil.copytree(rollouts_path(workdir), rollouts_path(straight_dir))
  straight = vae.train_and_evaluate(config, straight_dir)

  real_frame_batches = vae.frame_batches

  def dies_after_five_batches(*args, **kwargs):
    dataset = real_frame_batches(*args, **kwargs)

    class Dying:
      def __iter__(self):
        iterator = iter(dataset)
        count = [0]

        class It:
          def __next__(self):
            count[0] += 1
            if count[0] > 5:
              raise _Killed
            return next(iterator)
          get_state = iterator.get_state
          set_state = iterator.set_state
        return It()
    return Dying()

  monkeypatch.setattr(vae, 'frame_batches', dies_after_five_batches)
  with pytest.raises(_Killed):
    vae.train_and_evaluate(config, workdir)
  monkeypatch.undo()
  manager = training.checkpoint_manager(os.path.join(workdir, 'vae', 'checkpoints'),
                                      vae.vae_fingerprint(config))
  assert manager.latest_step() in (2, 4)  # Died mid-run; resumes from its last checkpoint.
  resumed = vae.train_and_evaluate(config, workdir)
  assert int(resumed.step) == int(straight.step) == 6
  for a, b in zip(jax.tree.leaves(resumed.params), jax.tree.leaves(straight.params)):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_workdir_with_other_config_is_refused(workdir):
  config = small_config()
  vae.train_and_evaluate(config, workdir)
  config.vae.z_size = 64
  with pytest.raises(ValueError, match=r'different configuration:\n  vae\.z_size: stored 32, config 64'):
    vae.train_and_evaluate(config, workdir)


def test_encode_stores_mu_logvar_series_and_initial_latents(workdir):
  config = small_config()
  with pytest.raises(FileNotFoundError, match='Run the vae stage first'):
    vae.encode_dataset(config, workdir)
  state = vae.train_and_evaluate(config, workdir)
  vae.encode_dataset(config, workdir)
  rollouts = episodes_lib.open_episodes(rollouts_path(workdir))
  latents = episodes_lib.open_episodes(vae.latents_path(workdir))
  initial = np.load(vae.initial_latents_path(workdir))
  assert len(latents) == len(rollouts) == initial['mu'].shape[0]
  model = ConvVAE(config.vae.z_size)
  for i in (0, len(rollouts) - 1):
    frames = rollouts[i]['frames']
    mu, logvar = model.apply({'params': state.params}, frames, method=ConvVAE.encode)
    np.testing.assert_allclose(latents[i]['mu'], mu, atol=1e-4)
    np.testing.assert_allclose(latents[i]['logvar'], logvar, atol=1e-4)
    np.testing.assert_array_equal(latents[i]['actions'], rollouts[i]['actions'])
    np.testing.assert_array_equal(latents[i]['dones'], rollouts[i]['dones'])
    np.testing.assert_allclose(initial['mu'][i], mu[0], atol=1e-4)


_TWO_DEVICE_RUN = '''
import sys
import jax
import numpy as np
from conftest import small_config
from wm_jax.world_models.stages import vae
assert jax.device_count() == 2, jax.devices()
config = small_config()
config.mesh.data = 2
state = vae.train_and_evaluate(config, sys.argv[1])
assert all(len(x.sharding.device_set) == 2 for x in jax.tree.leaves(state.params))
np.savez(sys.argv[2], *jax.tree.leaves(jax.device_get(state.params)))
'''


def test_two_device_data_parallel_run_matches_one_device(workdir, tmp_path_factory):
  """`mesh.data=2` shards each batch over two (host) devices and trains to the same parameters."""
  one_device = vae.train_and_evaluate(small_config(), workdir)
  two_dir = str(tmp_path_factory.mktemp('two_devices'))
  shutil.copytree(rollouts_path(workdir), rollouts_path(two_dir))
  out = os.path.join(two_dir, 'params.npz')
  tests_dir = os.path.dirname(os.path.abspath(__file__))
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2',
             PYTHONPATH=os.pathsep.join([tests_dir, os.path.dirname(tests_dir)]))
  subprocess.run([sys.executable, '-c', _TWO_DEVICE_RUN, two_dir, out], env=env, check=True,
                 timeout=600)
  two_device = np.load(out)
  leaves = jax.tree.leaves(one_device.params)
  assert len(two_device.files) == len(leaves)
  # Two devices sum the gradient in another order; Adam's 1/sqrt(v) magnifies that rounding in
  # near-zero gradients, so allow 1e-4, a tenth of one step's largest move at lr 1e-3.
  for i, leaf in enumerate(leaves):
    np.testing.assert_allclose(two_device[f'arr_{i}'], leaf, rtol=1e-4, atol=1e-4)
