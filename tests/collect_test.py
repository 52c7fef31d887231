import jax
import numpy as np
import pytest

from wm_jax.data.collect import make_collect
from wm_jax.envs.pixels import make_pixel_env
from wm_jax.world_models import Workdir, configs
from wm_jax.world_models.stages import collect as collect_stage


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


def collect_doom(workdir, num_workers):
  from wm_jax.data.episodes import open_episodes
  config = configs.get('default:tiny')
  config.env.name = 'DoomTakeCover'
  config.env.num_workers = num_workers
  config.env.max_steps = 130
  config.collect.num_episodes = 3
  config.collect.min_steps = 110
  config.collect.max_action_repeat = 10
  collect_stage.collect(config, str(workdir))
  source = open_episodes(Workdir(str(workdir)).rollouts)
  return [source[i] for i in range(len(source))]


def test_parallel_host_collection_writes_a_readable_dataset(tmp_path):
  episodes = collect_doom(tmp_path / 'two_workers', num_workers=2)
  assert len(episodes) == 3
  for episode in episodes:
    length = len(episode['frames'])
    assert 110 <= length <= 130  # Shorter episodes were dropped; longer ones cut.
    assert episode['frames'].shape == (length, 64, 64, 3) and episode['frames'].dtype == np.uint8
    assert set(np.unique(episode['actions'])) <= {0, 1, 2}
    assert episode['dones'][-1] and not episode['dones'][:-1].any()
    np.testing.assert_array_equal(episode['rewards'], 1.0)
  # The same episodes whatever the number of workers.
  for a, b in zip(episodes, collect_doom(tmp_path / 'one_worker', num_workers=1)):
    np.testing.assert_array_equal(a['frames'], b['frames'])
    np.testing.assert_array_equal(a['actions'], b['actions'])


def test_min_steps_is_refused_for_gymnax_collection(tmp_path):
  config = configs.get('default:tiny')
  config.collect.min_steps = 10
  with pytest.raises(ValueError, match=r'collect\.min_steps=10 is only for host games'):
    collect_stage.collect(config, str(tmp_path))
