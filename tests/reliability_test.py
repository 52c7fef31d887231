"""Faults a World Models workdir survives: damaged or half-written outputs are made again, a
diverged or damaged checkpoint never becomes the one a run resumes from, bad values are refused
before anything runs, a stage extended on a finished workdir re-runs the stages after it, and a
read-only workdir can still be scored. (The workdir lock: workdir_lock_test.py.)"""

import glob
import json
import os
import shutil

import grain
import jax
import jax.numpy as jnp
import numpy as np
import optax
import orbax.checkpoint as ocp
import pytest
from flax.training import train_state

from wm_jax import world_models
from wm_jax.common import training
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models import Workdir, configs
from wm_jax.world_models.stages import evaluate, vae


def copy_parts(source, destination, parts=('data', 'vae')):
  for part in parts:
    shutil.copytree(os.path.join(source, part), os.path.join(destination, part))
  return destination


def read_all(path):
  source = episodes_lib.open_episodes(path)
  return [source[i] for i in range(len(source))]


def assert_same_episodes(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys() and all(np.array_equal(x[k], y[k]) for k in x)


@pytest.fixture(scope='module')
def finished_workdir(latent_workdir, tmp_path_factory):
  """The whole tiny pipeline, finished."""
  workdir = copy_parts(latent_workdir, str(tmp_path_factory.mktemp('finished')))
  world_models.run(configs.get('default:tiny'), workdir)
  return workdir


# 2. Half-written datasets are made again, never reused.

def test_collect_remakes_a_damaged_dataset_and_removes_unfinished_writes(rollout_workdir,
                                                                        tmp_path):
  paths = Workdir(copy_parts(rollout_workdir, str(tmp_path), ('data',)))
  original = read_all(paths.rollouts)
  version = episodes_lib.dataset_dir(paths.rollouts)
  os.remove(os.path.join(version, 'dataset_info.json'))
  killed_write = os.path.join(os.path.dirname(version), 'incomplete.abc123_1.0.0')
  os.makedirs(killed_write)
  assert not episodes_lib.is_complete(paths.rollouts)
  world_models.run(configs.get('default:tiny'), paths.root, ['collect'])
  assert_same_episodes(read_all(paths.rollouts), original)
  assert not os.path.exists(killed_write)

  shard, = glob.glob(os.path.join(version, '*.array_record-*'))
  os.remove(shard)  # A lost shard: incomplete as well.
  assert not episodes_lib.is_complete(paths.rollouts)
  world_models.run(configs.get('default:tiny'), paths.root, ['collect'])
  assert_same_episodes(read_all(paths.rollouts), original)


def test_encode_remakes_lost_initial_latents_from_every_episode(latent_workdir, tmp_path):
  paths = Workdir(copy_parts(latent_workdir, str(tmp_path)))
  with np.load(paths.initial_latents) as stored:
    original = dict(stored)
  os.remove(paths.initial_latents)
  world_models.run(configs.get('default:tiny'), paths.root, ['encode'])
  with np.load(paths.initial_latents) as remade:
    assert len(remade['mu']) == len(read_all(paths.latents())) == 24
    for name in ('mu', 'logvar'):
      np.testing.assert_array_equal(remade[name], original[name])


# 3. A diverged state is never checkpointed.

class _Position(grain.DatasetIterator):
  """A stand-in for a checkpointable grain iterator over constant batches."""

  def __next__(self):
    return np.zeros((2, 1), np.float32)

  def get_state(self):
    return {}

  def set_state(self, state):
    del state


def test_fit_never_checkpoints_a_state_holding_nan(tmp_path):
  """The loss stays finite (checked only every 100 steps anyway) while the parameters turn to
  NaN at step 3: checkpoints 1 and 2 survive, 3 is never written."""
  state = train_state.TrainState.create(apply_fn=None, params={'w': jnp.ones(3)},
                                        tx=optax.sgd(1.0))

  def step_fn(state, batch):
    w = jnp.where(state.step >= 2, jnp.nan, state.params['w'])
    return state.replace(step=state.step + 1, params={'w': w}), {'loss': jnp.float32(1.0)}

  manager = training.checkpoint_manager(str(tmp_path / 'checkpoints'), {'run': 1}, max_to_keep=5)
  log = training.MetricsLog(str(tmp_path))
  with pytest.raises(FloatingPointError, match=r'diverged by step 3.*Try a lower lr'):
    training.fit(state, step_fn, _Position(), manager, log, num_steps=6, log_every=100,
                 eval_every=100, checkpoint_every=1, place=lambda batch: batch, what='W',
                 learning_rate_key='lr')
  assert manager.all_steps() == [1, 2]


def test_diverging_v_leaves_no_checkpoint(rollout_workdir, tmp_path):
  """The issue's case: V's loss is logged every 50 steps, its state saved every 2."""
  workdir = copy_parts(rollout_workdir, str(tmp_path), ('data',))
  config = configs.get('default:tiny')
  config.vae.learning_rate, config.vae.log_every, config.vae.checkpoint_every = 1e6, 50, 2
  with pytest.raises(FloatingPointError, match='vae.learning_rate'):
    world_models.run(config, workdir, ['vae'])
  assert training.stored_fingerprint(Workdir(workdir).checkpoints('vae')) is None


# 4. Errors before the work, not after it.

def test_too_little_data_for_m_is_refused_before_collecting_or_training(rollout_workdir,
                                                                       tmp_path):
  config = configs.get('default:tiny')
  config.collect.num_episodes = 1  # At most 30 steps; M's epoch needs 4 x 8.
  with pytest.raises(ValueError, match=r'at most hold 30 steps.*mdn.num_streams=4'):
    world_models.run(config, str(tmp_path / 'one'))
  assert not os.path.exists(tmp_path / 'one' / 'data')

  # Possible in principle (24 x 30 steps), too few in fact (the 24 episodes hold 407): refused
  # once collected, before V trains; the collected data is kept.
  config = configs.get('default:tiny')
  config.mdn.num_streams, config.mdn.chunk_length = 20, 30
  workdir = str(tmp_path / 'short')
  with pytest.raises(ValueError, match=r'24 episodes collected .* hold 407 steps'):
    world_models.run(config, workdir)
  assert episodes_lib.is_complete(Workdir(workdir).rollouts)
  assert not os.path.exists(Workdir(workdir).vae)


def test_values_out_of_range_are_refused_before_anything_is_written(tmp_path):
  config = configs.get('default:tiny')
  config.vae.num_steps, config.vae.learning_rate, config.dream.temperature = 0, -1e-3, 0.0
  with pytest.raises(ValueError) as error:
    world_models.run(config, str(tmp_path / 'run'))
  for line in ('vae.num_steps = 0: must be >= 1', 'vae.learning_rate = -0.001: must be > 0',
               'dream.temperature = 0.0: must be > 0'):
    assert line in str(error.value)
  assert not os.path.exists(tmp_path / 'run')


# 5. What the README promises: extended runs, inputs checked, results written last.

def test_extending_v_on_a_finished_workdir_makes_the_later_outputs_again(finished_workdir,
                                                                         tmp_path):
  workdir = copy_parts(finished_workdir, str(tmp_path), ('data', 'vae', 'mdn', 'controller'))
  config = configs.get('default:tiny')
  config.vae.num_steps += 2
  world_models.run(config, workdir, ['vae', 'encode', 'mdn'])
  paths = Workdir(workdir)
  assert episodes_lib.read_metadata(paths.latents())['vae.num_steps'] == 8
  assert training.stored_fingerprint(paths.checkpoints('mdn'))['vae.num_steps'] == 8
  assert training.read_metrics(os.path.join(paths.mdn(), 'metrics.jsonl'))['mdn/loss'][0].size == 4
  # A lowered key is no extension: refused, and nothing is removed.
  config.vae.num_steps -= 1
  with pytest.raises(FileNotFoundError, match=r'trained to vae.num_steps=7 .* Set vae.num_steps=8'):
    world_models.run(config, workdir, ['encode'])
  assert episodes_lib.is_complete(paths.latents())
  config.vae.num_steps += 1
  # C of the old M is refused until its stage makes it again.
  with pytest.raises(ValueError, match=r'predates .*vae.num_steps=8 \(was 6\): run the '
                                       'controller stage first'):
    world_models.run(config, workdir, ['evaluate'])


def test_a_stage_refuses_an_input_made_with_other_values(rollout_workdir, tmp_path):
  workdir = copy_parts(rollout_workdir, str(tmp_path), ('data',))
  config = configs.get('default:tiny')
  config.collect.max_action_repeat = 4
  with pytest.raises(ValueError, match=r'rollout dataset .* different configuration:\n'
                                       r'  collect.max_action_repeat: stored 3, config 4'):
    world_models.run(config, workdir, ['vae'])
  assert not os.path.exists(Workdir(workdir).vae)


def test_evaluate_writes_results_json_after_its_pictures(finished_workdir, tmp_path,
                                                          monkeypatch):
  workdir = copy_parts(finished_workdir, str(tmp_path), ('data', 'vae', 'mdn', 'controller'))
  config = configs.get('default:tiny')

  def killed(*args):
    raise KeyboardInterrupt

  monkeypatch.setattr(evaluate, 'write_dream_vs_real_gif', killed)
  with pytest.raises(KeyboardInterrupt):
    world_models.run(config, workdir, ['evaluate'])
  assert not os.path.exists(Workdir(workdir).results)
  monkeypatch.undo()
  results = world_models.run(config, workdir, ['evaluate'])['evaluate']
  for name in ('results.json', 'curves.png', 'dream_vs_real.gif'):
    assert os.path.exists(os.path.join(workdir, name))
  with open(os.path.join(finished_workdir, 'results.json')) as f:
    assert {k: v for k, v in results.items() if k != 'seconds'} == json.load(f)


# 6. Damaged checkpoints, read-only workdirs.

@pytest.mark.parametrize('damage', ['truncate', 'delete'])
def test_a_damaged_last_checkpoint_is_set_aside_and_training_redone(latent_workdir, tmp_path,
                                                                    damage):
  paths = Workdir(copy_parts(latent_workdir, str(tmp_path)))
  config = configs.get('default:tiny')
  trained = vae.restore_params(config, paths.root)
  last = os.path.join(paths.checkpoints('vae'), str(config.vae.num_steps))
  files = sorted(glob.glob(os.path.join(last, 'state', '**', '*'), recursive=True),
                 key=lambda f: os.path.getsize(f) if os.path.isfile(f) else -1)
  if damage == 'truncate':
    os.truncate(files[-1], 100)  # The largest file: the arrays.
  else:
    os.remove(os.path.join(last, 'state', 'manifest.ocdbt'))
  shutil.rmtree(paths.latents())  # So that encode reads V.
  with pytest.raises(RuntimeError, match='Run the vae stage again'):
    world_models.run(config, paths.root, ['encode'])
  with pytest.warns(UserWarning, match=rf'Checkpoint {config.vae.num_steps} in .* cannot be read'):
    world_models.run(config, paths.root, ['vae'])
  assert os.listdir(os.path.join(paths.vae, 'unreadable_checkpoints'))
  for a, b in zip(jax.tree.leaves(vae.restore_params(config, paths.root)),
                  jax.tree.leaves(trained)):
    np.testing.assert_array_equal(a, b)


def test_no_readable_checkpoint_is_an_error_and_moves_nothing(tmp_path):
  """Every checkpoint unreadable (a damaged directory, or a state of another structure): the
  error is raised rather than training started over."""
  manager = training.checkpoint_manager(str(tmp_path / 'checkpoints'), {'run': 1})
  state = {'w': jnp.arange(3.0)}
  for step in (1, 2):
    manager.save(step, args=ocp.args.StandardSave(state))
  manager.wait_until_finished()
  for step in (1, 2):
    os.remove(tmp_path / 'checkpoints' / str(step) / 'default' / 'manifest.ocdbt')
  with pytest.raises(Exception):
    training.restore_newest(manager, ocp.args.StandardRestore(training.abstract(state)))
  assert manager.all_steps() == [1, 2] and not os.path.exists(tmp_path / 'unreadable_checkpoints')


def test_a_read_only_workdir_is_scored_without_writing(finished_workdir, tmp_path,
                                                        monkeypatch):
  workdir = copy_parts(finished_workdir, str(tmp_path), ('data', 'vae', 'mdn', 'controller'))
  before = sorted(glob.glob(os.path.join(workdir, '**'), recursive=True))
  config = configs.get('default:tiny')
  config.evaluate.num_episodes = 6
  writable = os.access
  monkeypatch.setattr(os, 'access', lambda path, mode: False if mode == os.W_OK else
                      writable(path, mode))  # As on a read-only mount (root ignores modes).
  with pytest.warns(UserWarning, match='is read-only: the results are not written'):
    results = world_models.run(config, workdir, ['evaluate'])['evaluate']
  assert results['real']['episodes'] == 6
  assert sorted(glob.glob(os.path.join(workdir, '**'), recursive=True)) == before
