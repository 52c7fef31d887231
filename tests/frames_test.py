import numpy as np
import pytest

from wm_jax.world_models import Workdir
from wm_jax.data.episodes import open_episodes
from wm_jax.world_models.frames import check_frames, frame_batches


def test_check_frames_accepts_good_frames():
  check_frames(np.zeros((2, 64, 64, 3), np.uint8))
  check_frames(np.ones((2, 64, 64, 3), np.float32))


@pytest.mark.parametrize('frames, message', [
    (np.full((2, 64, 64, 3), 255.0, np.float32), r'\[0, 1\].*divide by 255'),
    (np.full((2, 64, 64, 3), -0.5, np.float32), r'\[0, 1\]'),
    (np.full((2, 64, 64, 3), np.nan, np.float32), r'\[0, 1\]'),
    (np.zeros((2, 32, 32, 3), np.uint8), 'shape'),
    (np.zeros((2, 64, 64, 3), np.int16), 'dtype'),
])
def test_check_frames_names_the_problem(frames, message):
  with pytest.raises(ValueError, match=message):
    check_frames(frames)


def test_batches_resume_from_iterator_state(rollout_workdir):
  episodes = open_episodes(Workdir(rollout_workdir).rollouts)
  dataset = frame_batches(episodes, batch_size=8, seed=3, shuffle_window=32, max_episode_length=60)
  iterator = iter(dataset)
  first = next(iterator)
  assert first.shape == (8, 64, 64, 3) and first.dtype == np.uint8
  for _ in range(5):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator) for _ in range(6)]
  resumed = iter(dataset)
  resumed.set_state(state)
  for a in expected:
    np.testing.assert_array_equal(next(resumed), a)
