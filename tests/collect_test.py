import glob
import multiprocessing
import os
import signal
import threading
import time

import jax
import numpy as np
import pytest

from wm_jax.data import host_collect
from wm_jax.data.collect import make_collect
from wm_jax.data.episodes import dataset_dir, open_episodes
from wm_jax.envs import games
from wm_jax.envs.pixels import make_pixel_env
from wm_jax.world_models import Workdir, configs
from wm_jax.world_models.stages import collect as collect_stage
from wm_jax.world_models.workdir import fingerprint


def collect(key=0, episodes=6, max_steps=40, repeat=3):
  env, params = make_pixel_env('CartPole-v1')
  return make_collect(env, params, max_steps, repeat)(jax.random.key(key), episodes)


def test_shapes_lengths_and_masking():
  rollouts = jax.device_get(collect())
  assert rollouts.frames.shape == (6, 40, 64, 64, 3) and rollouts.frames.dtype == np.uint8
  for e, length in enumerate(rollouts.lengths):
    assert 1 <= length <= 40
    dones = rollouts.dones[e]
    assert dones[length - 1] and not dones[:length - 1].any()  # Ends exactly at its length.
    assert not rollouts.frames[e, length:].any()  # Steps after the end are zero.
    assert rollouts.rewards[e, :length].sum() == length  # CartPole pays 1 per step.
    if length < 40:
      assert rollouts.terminals[e, length - 1]  # Ended by falling, not the time limit.


def test_episodes_are_cut_to_length_and_frames_move():
  rollouts = collect()
  for episode, length in zip(rollouts.episodes(), np.asarray(rollouts.lengths)):
    assert {k: len(v) for k, v in episode.items()} == dict.fromkeys(episode, length)
    if length > 1:
      assert (episode['frames'][0] != episode['frames'][-1]).any()


def test_held_actions_switch_less_often():
  rollouts = jax.device_get(collect(episodes=8, repeat=1, max_steps=30))
  held = jax.device_get(collect(episodes=8, repeat=8, max_steps=30))

  def switches(r):
    total = 0
    for e, n in enumerate(r.lengths):
      total += int(np.sum(np.diff(r.actions[e, :n]) != 0))
    return total / max(int(np.sum(r.lengths - 1)), 1)
  # Fresh action every frame: about half the steps switch; held 1..8 frames: far fewer.
  assert switches(rollouts) > 0.3 and switches(held) < 0.25


def test_deterministic_by_key():
  a, b, c = collect(key=1), collect(key=1), collect(key=2)
  np.testing.assert_array_equal(a.frames, b.frames)
  assert not np.array_equal(a.lengths, c.lengths) or not np.array_equal(a.frames, c.frames)


def test_dataset_from_another_config_is_refused(rollout_workdir):
  config = configs.get('default:tiny')
  # Complete and matching: reused as it is.
  assert collect_stage.collect(config, rollout_workdir) == {'episodes': 24}
  config.collect.max_action_repeat = 7
  with pytest.raises(ValueError, match=r'collect\.max_action_repeat: stored 3, config 7'):
    collect_stage.collect(config, rollout_workdir)


def doom_config(num_workers):
  config = configs.get('default:tiny')
  config.env.name = 'DoomTakeCover'
  config.env.num_workers = num_workers
  # Seed 0's first episodes last [453, 378, 540, 420, ...] steps: episode 1 is dropped. Blocks
  # 0 and 1 (episodes 0..1, 2..3) are both needed, so two workers play them at once.
  config.env.max_steps = 400
  config.collect.min_steps = 380
  config.collect.max_action_repeat = 10
  config.collect.episodes_per_chunk = 2
  config.collect.num_episodes = 3
  return config


def dataset_files(workdir):
  directory = dataset_dir(Workdir(str(workdir)).rollouts)
  return {name: open(os.path.join(directory, name), 'rb').read()
          for name in sorted(os.listdir(directory))}


def test_host_collection_is_the_same_whatever_the_workers_and_interruptions(tmp_path):
  config = doom_config(num_workers=2)
  collect_stage.collect(config, str(tmp_path / 'two_workers'))
  source = open_episodes(Workdir(str(tmp_path / 'two_workers')).rollouts)
  assert len(source) == 3
  for episode in map(source.__getitem__, range(3)):
    length = len(episode['frames'])
    assert 380 <= length <= 400  # Shorter episodes were dropped; longer ones cut.
    assert episode['frames'].shape == (length, 64, 64, 3) and episode['frames'].dtype == np.uint8
    assert set(np.unique(episode['actions'])) <= {0, 1, 2}
    assert episode['dones'][-1] and not episode['dones'][:-1].any()
    np.testing.assert_array_equal(episode['rewards'], 1.0)

  # One worker, after a killed run that had finished block 0 and was writing block 1.
  config = doom_config(num_workers=1)
  path = Workdir(str(tmp_path / 'one_worker')).rollouts
  blocks = os.path.join(path, host_collect.UNFINISHED_BLOCKS)
  spec = dict(collect_stage.rollout_spec(config))
  host_collect._finished_blocks(blocks, fingerprint(config, 'collect'))
  with multiprocessing.get_context('spawn').Pool(1, games.init_collector, (config.env.name,)) as pool:
    pool.apply(host_collect._collect_block,
               ((blocks, 0, config.seed, 2, 400, 10, 380, spec, os.getpid()),))
  with open(os.path.join(blocks, 'block-00001'), 'wb') as f:
    f.write(b'half a shard')
  block_0 = os.stat(os.path.join(blocks, 'block-00000'))
  changed = doom_config(num_workers=1)
  changed.collect.max_action_repeat = 4
  with pytest.raises(ValueError, match=r'unfinished collection.*\n.*collect\.max_action_repeat: '
                                       r'stored 10, config 4'):
    collect_stage.collect(changed, str(tmp_path / 'one_worker'))
  collect_stage.collect(config, str(tmp_path / 'one_worker'))
  published = os.stat(os.path.join(dataset_dir(path), 'episode_dataset-train.array_record-'
                                   '00000-of-00002'))
  # Reused, not played again (a replay writes a new file and renames it into place).
  assert (published.st_ino, published.st_mtime_ns) == (block_0.st_ino, block_0.st_mtime_ns)
  assert not os.path.exists(blocks)
  assert dataset_files(tmp_path / 'one_worker') == dataset_files(tmp_path / 'two_workers')


def test_a_dead_collection_worker_is_an_error_not_a_wait(tmp_path):
  config = configs.get('carracing')  # A game in the worker's own process: no orphan left.
  config.env.max_steps, config.env.num_workers = 50, 2
  config.collect.num_episodes, config.collect.episodes_per_chunk = 40, 10
  others = set(multiprocessing.active_children())
  writing = os.path.join(Workdir(str(tmp_path)).rollouts, host_collect.UNFINISHED_BLOCKS,
                         'block-*.*.tmp')  # A worker's shard while it plays the block.

  def kill_a_playing_worker():
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
      shards = glob.glob(writing)
      if shards:
        os.kill(int(shards[0].split('.')[-2]), signal.SIGKILL)
        return
      time.sleep(0.01)

  killer = threading.Thread(target=kill_a_playing_worker)
  killer.start()
  with pytest.raises(RuntimeError, match=r'worker died \(exit code -9\) while blocks \['):
    collect_stage.collect(config, str(tmp_path))
  killer.join()
  assert not [p for p in multiprocessing.active_children() if p not in others]


def test_blocks_start_only_when_the_blocks_before_may_not_keep_enough():
  finished = {0: host_collect._Block(None, (0, 2)), 2: host_collect._Block(None, (1,))}
  # Needed 6, blocks of 3: block 0 kept 2; block 1 (running) keeps at most 3, block 2 kept 1.
  assert host_collect._blocks_to_start(finished, {1}, 3, 6, workers=4) == []
  assert host_collect._blocks_to_start(finished, {1}, 3, 7, workers=4) == [3]
  assert host_collect._blocks_to_start(finished, set(), 3, 20, workers=4) == [1, 3, 4, 5]
  assert host_collect._blocks_to_start(finished, {1, 3}, 3, 20, workers=2) == []
  assert host_collect._last_block(finished, 2) == 0
  assert host_collect._last_block(finished, 3) is None  # Block 1 is not finished.


def test_min_steps_is_refused_for_gymnax_collection(tmp_path):
  config = configs.get('default:tiny')
  config.collect.min_steps = 10
  with pytest.raises(ValueError, match=r'collect\.min_steps=10 is only for host games'):
    collect_stage.collect(config, str(tmp_path))
