"""Video clips for the VQ-VAE and the prior: one grain pipeline over several sources.

Sources (config key `data.name`), each a random-access source of examples:
- 'moving_digits': the offline Moving-Digits builder (wm_jax/data/moving_digits.py), built in
  `data.data_dir` on first use (minutes, no network); 'moving_digits_small' its 320-clip
  version (seconds).
- 'moving_mnist', 'bair_robot_pushing_small', 'ucf101': the TFDS datasets. They download their
  data, so they work only where the network is reachable; preparing BAIR and UCF-101 also needs
  TensorFlow (their sources are tfrecords / encoded videos), reading the prepared array_record
  files does not. TFDS's Moving MNIST has one 10,000-clip split: its first 9,000 clips train.
- 'world_models': the rollouts of a World Models workdir (`data.data_dir`), 64x64 RGB frames
  with their actions; episodes shorter than a clip are skipped. 'train' is the first 90% of the
  episodes, 'test' the last 10% (evaluation windows are each episode's first frames).

A clip is a `data.num_frames` window (random start in training, the first frames in
evaluation), centre-cropped and resized to `data.resolution` if needed: {'video': uint8
[T, R, R, C], and 'actions' [T, ...] where the source has them}. The models read videos in
[-0.5, 0.5] (`to_model_range`, applied on device, so uint8 crosses to it: 4x less traffic).
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import grain
import jax.numpy as jnp
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from wm_jax.data.episodes import ROLLOUTS_IN_WORKDIR, open_episodes
from wm_jax.data.moving_digits import MovingDigits  # Importing it registers it with TFDS.


@dataclasses.dataclass(frozen=True)
class TfdsVideos:
  name: str  # TFDS name/config
  video_key: str
  splits: dict[str, str]  # 'train' / 'test' -> TFDS split
  action_key: str | None = None


TFDS_SOURCES = {
    'moving_digits': TfdsVideos(f'{MovingDigits.name}/frames_16', 'video',
                                {'train': 'train', 'test': 'test'}),
    'moving_digits_small': TfdsVideos(f'{MovingDigits.name}/frames_16_small', 'video',
                                      {'train': 'train', 'test': 'test'}),
    'moving_mnist': TfdsVideos('moving_mnist', 'image_sequence',
                               {'train': 'test[:9000]', 'test': 'test[9000:]'}),
    'bair_robot_pushing_small': TfdsVideos('bair_robot_pushing_small', 'image_main',
                                           {'train': 'train', 'test': 'test'}, 'action'),
    'ucf101': TfdsVideos('ucf101/ucf101_1_256', 'video', {'train': 'train', 'test': 'test'}),
}
SOURCES = (*TFDS_SOURCES, 'world_models')
WORLD_MODELS_SPLITS = {'train': 'train[:90%]', 'test': 'train[90%:]'}


def open_videos(name: str, split: str, data_dir: str | None) -> tuple[Any, str, str | None]:
  """(random-access source, video key, action key or None) of a source's 'train'/'test' split."""
  if split not in ('train', 'test'):
    raise ValueError(f"split must be 'train' or 'test', got {split!r}.")
  if name == 'world_models':
    if not data_dir:
      raise ValueError("data.name='world_models' reads a World Models workdir: set data.data_dir.")
    rollouts, episodes = os.path.join(data_dir, ROLLOUTS_IN_WORKDIR), WORLD_MODELS_SPLITS[split]
    every = open_episodes(rollouts, 'rollout')  # A missing or unfinished dataset is refused.
    if not every.dataset_info.splits[episodes].num_examples:  # array_record would fail cryptically
      raise ValueError(f"The {split} split of data.name='world_models' ({episodes} of the "
                       f'{len(every)} episodes in data.data_dir={data_dir!r}) is empty: collect '
                       'more episodes.')
    return open_episodes(rollouts, 'rollout', episodes), 'frames', 'actions'
  if name not in TFDS_SOURCES:
    raise ValueError(f'Unknown data.name {name!r}; expected one of {SOURCES}.')
  spec = TFDS_SOURCES[name]
  tfds.disable_progress_bar()
  source = tfds.data_source(spec.name, split=spec.splits[split],
                            data_dir=os.path.abspath(data_dir) if data_dir else None,
                            builder_kwargs={'file_format': 'array_record'})
  return source, spec.video_key, spec.action_key


def to_model_range(videos: jnp.ndarray) -> jnp.ndarray:
  """uint8 [0, 255] -> float32 [-0.5, 0.5] (the paper's data range)."""
  if videos.dtype != jnp.uint8:
    raise ValueError(f'Expected uint8 videos, got {videos.dtype}.')
  return videos.astype(jnp.float32) / 255.0 - 0.5


def resize_frames(frames: np.ndarray, resolution: int) -> np.ndarray:
  """uint8 [T, H, W, C] -> [T, R, R, C]: centre square crop, bilinear resize."""
  _, height, width, channels = frames.shape
  if height == width == resolution:
    return frames
  side = min(height, width)
  top, left = (height - side) // 2, (width - side) // 2
  frames = frames[:, top:top + side, left:left + side]
  return np.stack([np.asarray(Image.fromarray(f.squeeze(-1) if channels == 1 else f).resize(
      (resolution, resolution), Image.BILINEAR)).reshape(resolution, resolution, channels)
                   for f in frames])


class _ToClip(grain.transforms.RandomMap):
  """example -> {'video', 'actions'?} of `num_frames` frames; None if the example is shorter."""

  def __init__(self, video_key: str, action_key: str | None, num_frames: int, resolution: int,
               random_start: bool):
    self.video_key, self.action_key = video_key, action_key
    self.num_frames, self.resolution, self.random_start = num_frames, resolution, random_start

  def random_map(self, example, rng: np.random.Generator):
    frames = np.asarray(example[self.video_key])
    if frames.ndim != 4 or frames.dtype != np.uint8:
      raise ValueError(f"Expected '{self.video_key}' frames uint8 [T, H, W, C], got "
                       f'{frames.dtype} {frames.shape}.')
    length = len(frames)
    if length < self.num_frames:
      return None
    start = int(rng.integers(length - self.num_frames + 1)) if self.random_start else 0
    window = slice(start, start + self.num_frames)
    clip = {'video': resize_frames(frames[window], self.resolution)}
    if self.action_key:
      clip['actions'] = np.asarray(example[self.action_key])[window]
    return clip


# How many examples `check_clip_length` reads, spread over a source, when its features do not
# fix the video length.
LENGTH_CHECK_EXAMPLES = 64


def check_clip_length(source, video_key: str, num_frames: int, what: str) -> None:
  """Raises a ValueError naming data.num_frames if no video of `source` (`what`, for the message)
  holds a clip of `num_frames` frames: grain would skip every example, forever in training.

  A TFDS source whose features fix the video length is checked on that; otherwise up to
  LENGTH_CHECK_EXAMPLES examples spread over the source are read, stopping at the first long
  enough (so a source where almost no video is long enough is refused too).
  """
  info = getattr(source, 'dataset_info', None)
  fixed = info.features[video_key].shape[0] if info is not None else None
  if fixed is not None:
    if fixed >= num_frames:
      return
    found = f'all its videos have {fixed} frames'
  else:
    if not len(source):
      raise ValueError(f'The {what} has no examples: no clip of data.num_frames={num_frames} '
                       'frames can be cut.')
    indices = np.linspace(0, len(source) - 1, min(len(source), LENGTH_CHECK_EXAMPLES))
    longest = 0
    for i in np.unique(indices.astype(int)):
      longest = max(longest, len(source[int(i)][video_key]))
      if longest >= num_frames:
        return
    checked = ('' if len(indices) == len(source) else
               f' of the {len(indices)} read, spread over its {len(source)},')
    found = f'the longest{checked} has {longest} frames'
  raise ValueError(f'data.num_frames={num_frames} is longer than every video of the {what}: '
                   f'{found}. Lower data.num_frames (a prior cuts the clips of its VQ-VAE) or '
                   'use longer videos.')


def clip_batches(source, video_key: str, action_key: str | None, *, num_frames: int,
                 resolution: int, batch_size: int, seed: int, train: bool,
                 num_threads: int = 2,
                 shard: grain.sharding.ShardOptions = grain.sharding.NoSharding()
                 ) -> grain.IterDataset:
  """Batches of clips {'video': uint8 [B, T, R, R, C], 'actions'?: [B, T, ...]}.

  train=True: an endless stream, examples reshuffled every epoch, random windows; `iter(...)`
  is checkpointable (get_state/set_state). train=False: one pass in order, first windows.
  `shard` picks the videos this process reads (`grain.sharding.ShardByJaxProcess()`: every
  process_count-th, from its index).
  A source without a video of `num_frames` frames is refused (`check_clip_length`).
  """
  check_clip_length(source, video_key, num_frames,
                    'training data' if train else 'evaluation data')
  ds = grain.MapDataset.source(source)[shard.shard_index::shard.shard_count].seed(seed)
  if train:
    ds = ds.shuffle().repeat()
  ds = ds.random_map(_ToClip(video_key, action_key, num_frames, resolution, random_start=train))
  ds = ds.filter(lambda clip: clip is not None)
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=8))
  return ds.batch(batch_size, drop_remainder=True)
