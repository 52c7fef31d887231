"""The paper's host games: preprocessing crops, 64x64x3 uint8 frames, seeded episodes."""

import numpy as np
import pytest

from wm_jax.envs import games


def two_tone(height, width, kept_rows):
  """A screen whose kept rows are 50 and the rows below them 250."""
  screen = np.full((height, width, 3), 250, np.uint8)
  screen[:kept_rows] = 50
  return screen


def test_doom_frame_keeps_the_top_five_sixths():
  frame = games.doom_frame(two_tone(120, 160, 100))
  assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
  assert frame.max() == 50  # Nothing of the bottom sixth (the paper's HUD rows) survives.
  assert games.doom_frame(two_tone(480, 640, 400)).max() == 50  # The paper's 640x480 screen.


def test_carracing_frame_drops_the_dashboard():
  frame = games.carracing_frame(two_tone(96, 96, 84))
  assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8 and frame.max() == 50


def play(game, seed, steps):
  rng = np.random.default_rng(seed)
  frames, rewards = [game.reset(seed)], []
  for _ in range(steps):
    frame, reward, terminated = game.step(game.random_action(rng))
    frames.append(frame)
    rewards.append(reward)
    if terminated:
      break
  return np.stack(frames), np.array(rewards)


@pytest.mark.parametrize('name', ['DoomTakeCover', 'CarRacing-v3'])
def test_games_give_64x64_uint8_frames_reproducible_by_seed(name):
  game = games.make_game(name)
  try:
    frames, rewards = play(game, seed=3, steps=30)
    again, rewards_again = play(game, seed=3, steps=30)
    other, _ = play(game, seed=4, steps=30)
  finally:
    game.close()
  assert frames.shape[1:] == (64, 64, 3) and frames.dtype == np.uint8
  assert len(frames) == 31  # Neither game ends within 30 random steps.
  np.testing.assert_array_equal(frames, again)
  np.testing.assert_array_equal(rewards, rewards_again)
  assert not np.array_equal(frames, other)
  assert frames.std(axis=0).max() > 0  # The view changes.
  if name == 'DoomTakeCover':
    np.testing.assert_array_equal(rewards, 1.0)  # One point per frame survived.


def test_random_episode_follows_the_collect_format():
  game = games.make_game('DoomTakeCover')
  try:
    episode = games.random_episode(game, seed=0, max_steps=40, max_action_repeat=10)
  finally:
    game.close()
  assert {k: len(v) for k, v in episode.items()} == dict.fromkeys(episode, 40)
  assert episode['frames'].shape == (40, 64, 64, 3)
  assert set(np.unique(episode['actions'])) <= {0, 1, 2}
  assert episode['dones'][-1] and not episode['dones'][:-1].any()
  assert not episode['terminals'].any()  # Cut by max_steps, not by dying.


def test_unknown_game_is_named():
  with pytest.raises(ValueError, match="No host game 'Pong'"):
    games.make_game('Pong')
