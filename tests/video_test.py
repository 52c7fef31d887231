import os
import types

import numpy as np
import pytest

from wm_jax.data import video
from wm_jax.world_models import Workdir
from wm_jax.data.episodes import ROLLOUTS_IN_WORKDIR, open_episodes, write_episodes


class _Source:
  """Examples with frames [length, 8, 8, 1] whose pixels hold (example, frame) codes."""

  def __init__(self, lengths):
    self.lengths = lengths

  def __len__(self):
    return len(self.lengths)

  def __getitem__(self, i):
    frames = np.zeros((self.lengths[i], 8, 8, 1), np.uint8)
    frames[:] = (50 * i + np.arange(self.lengths[i]))[:, None, None, None]
    return {'frames': frames, 'actions': np.arange(self.lengths[i])}


class _FixedLengthSource(_Source):
  """A TFDS-like source whose features fix every video at 12 frames; reading is not needed."""

  dataset_info = types.SimpleNamespace(
      features={'frames': types.SimpleNamespace(shape=(12, 8, 8, 1))})

  def __getitem__(self, i):
    raise AssertionError('The features give the length: no example is read.')


@pytest.mark.parametrize('train', [True, False])
def test_clips_longer_than_every_video_are_refused_up_front(train):
  """Grain would skip every example: forever in training."""
  clips = lambda source, num_frames: video.clip_batches(
      source, 'frames', None, num_frames=num_frames, resolution=8, batch_size=2, seed=0,
      train=train)
  with pytest.raises(ValueError, match='data.num_frames=8 .* the longest has 7 frames'):
    clips(_Source([5, 7, 3]), 8)
  with pytest.raises(ValueError, match='the longest of the 64 read, spread over its 200, has 3'):
    clips(_Source([3] * 200), 8)
  with pytest.raises(ValueError, match='data.num_frames=16 .* all its videos have 12 frames'):
    clips(_FixedLengthSource([12] * 4), 16)
  with pytest.raises(ValueError, match='no examples'):
    clips(_Source([]), 8)
  clips(_Source([3] * 199 + [8]), 8)  # The last example is read: one video is long enough.
  clips(_FixedLengthSource([12] * 4), 12)


def test_training_windows_are_contiguous_random_and_skip_short_examples():
  source = _Source([20, 5, 20, 20])  # Example 1 is shorter than a clip.
  batches = video.clip_batches(source, 'frames', 'actions', num_frames=6, resolution=8,
                               batch_size=3, seed=0, train=True)
  clips = [b for b, _ in zip(batches, range(8))]
  starts = set()
  for batch in clips:
    assert batch['video'].shape == (3, 6, 8, 8, 1) and batch['actions'].shape == (3, 6)
    for clip, actions in zip(batch['video'][..., 0, 0, 0], batch['actions']):
      example, first = divmod(int(clip[0]), 50)
      assert example != 1
      np.testing.assert_array_equal(clip, 50 * example + first + np.arange(6))
      np.testing.assert_array_equal(actions, first + np.arange(6))
      starts.add(first)
  assert len(starts) > 3


def test_iterator_resumes_at_the_same_batch():
  batches = video.clip_batches(_Source([12] * 10), 'frames', None, num_frames=4, resolution=8,
                               batch_size=2, seed=1, train=True)
  iterator = iter(batches)
  for _ in range(3):
    next(iterator)
  state = iterator.get_state()
  expected = [next(iterator)['video'] for _ in range(4)]
  resumed = iter(batches)
  resumed.set_state(state)
  for want in expected:
    np.testing.assert_array_equal(next(resumed)['video'], want)


def test_evaluation_is_one_ordered_pass_of_first_windows():
  batches = list(video.clip_batches(_Source([12, 12, 12, 12]), 'frames', None, num_frames=4,
                                    resolution=4, batch_size=2, seed=0, train=False))
  assert len(batches) == 2
  firsts = np.concatenate([b['video'][:, :, 0, 0, 0] for b in batches])
  np.testing.assert_array_equal(firsts, 50 * np.arange(4)[:, None] + np.arange(4))
  assert batches[0]['video'].shape == (2, 4, 4, 4, 1)  # Resized to the resolution.


def test_resize_crops_the_centre_square():
  frames = np.zeros((2, 40, 80, 3), np.uint8)
  frames[:, :, 20:60] = 255  # The centre 40x40 square is white, the sides black.
  out = video.resize_frames(frames, 16)
  assert out.shape == (2, 16, 16, 3) and out.min() == 255


def test_world_models_rollouts_become_clips(rollout_workdir):
  source, video_key, action_key = video.open_videos('world_models', 'train', rollout_workdir)
  batch = next(iter(video.clip_batches(source, video_key, action_key, num_frames=8,
                                       resolution=64, batch_size=2, seed=0, train=True)))
  assert batch['video'].shape == (2, 8, 64, 64, 3) and batch['actions'].shape == (2, 8)
  test_source = video.open_videos('world_models', 'test', rollout_workdir)[0]
  episodes = len(open_episodes(Workdir(rollout_workdir).rollouts))
  assert 0 < len(test_source) < len(source) and len(source) + len(test_source) == episodes


def test_an_empty_world_models_split_is_named(tmp_path):
  """3 episodes: the first 90% are all of them, the last 10% none."""
  spec = {'frames': ((8, 8, 3), np.uint8), 'actions': ((), np.int64)}
  episode = {'frames': np.zeros((5, 8, 8, 3), np.uint8), 'actions': np.zeros(5, np.int64)}
  write_episodes(os.path.join(tmp_path, ROLLOUTS_IN_WORKDIR), spec, [episode] * 3, {})
  assert len(video.open_videos('world_models', 'train', str(tmp_path))[0]) == 3
  with pytest.raises(ValueError, match=r"test split of data.name='world_models' \(train\[90%:\] "
                                       'of the 3 episodes in data.data_dir=.* is empty'):
    video.open_videos('world_models', 'test', str(tmp_path))


def test_bad_sources_are_named():
  with pytest.raises(ValueError, match='data.name'):
    video.open_videos('kinetics', 'train', None)
  with pytest.raises(ValueError, match='data.data_dir'):
    video.open_videos('world_models', 'train', '')
  with pytest.raises(ValueError, match='uint8'):
    video.to_model_range(np.zeros((1, 2, 4, 4, 1), np.float32))
