"""Frames for V: checks on user-supplied frames and the grain pipeline over stored episodes.

The pipeline shuffles episodes (a new order every epoch), reads them on background threads,
splits them into frames, shuffles frames within a window of `shuffle_window` frames, and batches. Its iterator state is small
JSON that the trainer checkpoints beside the parameters, so a resumed run continues from the
exact batch where it stopped.
"""

from __future__ import annotations

import grain
import numpy as np

from wm_jax.world_models.models.conv_vae import check_frame_batch


def check_frames(frames: np.ndarray) -> None:
  """Host-side check of a [B, 64, 64, 3] batch: shape, dtype, and (for floats) range [0, 1]."""
  check_frame_batch(frames)
  if np.issubdtype(frames.dtype, np.floating) and frames.size:
    low, high = float(np.min(frames)), float(np.max(frames))
    if low < 0.0 or high > 1.0 or not np.isfinite(low + high):
      hint = ' (0..255 floats? divide by 255 or pass uint8)' if high > 1.0 else ''
      raise ValueError(f'Float frames must lie in [0, 1]; got values in [{low}, {high}]{hint}.')


class _EpisodeFrames(grain.experimental.FlatMapTransform):
  """Splits an episode dict into its frames [64, 64, 3]."""

  def __init__(self, max_fan_out: int):
    self.max_fan_out = max_fan_out

  def flat_map(self, episode):
    return list(episode['frames'])


def frame_batches(episodes, batch_size: int, seed: int, shuffle_window: int,
                  max_episode_length: int, num_threads: int = 2,
                  shard: grain.sharding.ShardOptions = grain.sharding.NoSharding()
                  ) -> grain.IterDataset:
  """An endless grain dataset of [batch_size, 64, 64, 3] uint8 batches from an episode source.

  episodes: a random-access source (`wm_jax.data.episodes.open_episodes`) of dicts holding
  'frames' [T, 64, 64, 3], T <= max_episode_length. `shard` picks the episodes this process
  reads (`grain.sharding.ShardByJaxProcess()`: every process_count-th, from its index).
  `iter(...)` gives a checkpointable iterator (get_state/set_state).
  """
  ds = grain.MapDataset.source(episodes)[shard.shard_index::shard.shard_count]
  ds = ds.seed(seed).shuffle().repeat()
  # Reading threads prefetch episodes; a further prefetch stage measured no faster on 2 cores.
  ds = ds.to_iter_dataset(grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=8))
  ds = grain.experimental.FlatMapIterDataset(ds, _EpisodeFrames(max_fan_out=max_episode_length))
  ds = grain.experimental.WindowShuffleIterDataset(ds, window_size=shuffle_window, seed=seed)
  return ds.batch(batch_size, drop_remainder=True)
