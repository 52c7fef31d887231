"""Episodes on disk: a TFDS dataset (array_record, no TensorFlow) of per-step arrays.

One example is one episode: a dict of arrays whose leading axis is time, e.g. pixel rollouts
(`frames` [T, 64, 64, 3] uint8, `actions` [T], `rewards` [T], `dones` [T]) or V's encodings
(`mu`, `logvar` [T, z], ...). The same builder writes both; the features come from the
`EpisodeSpec` handed to it.

TFDS prepares a dataset in a temporary folder (`incomplete.*`) and renames it into place only
when every shard and `dataset_info.json` are written, so a killed write never leaves a dataset
that `open_episodes` takes for complete; the next `write_episodes` removes what a killed write
or a damaged dataset (a shard or `dataset_info.json` deleted) left, and writes it again.
"""

from __future__ import annotations

import glob
import itertools
import json
import os
import shutil
from typing import Any, Iterable, Mapping

import numpy as np
import tensorflow_datasets as tfds
from tensorflow_datasets.core import shuffle as tfds_shuffle

# Where a World Models workdir keeps its collected rollouts (its collect stage writes them; the
# VideoGPT source 'world_models' reads them).
ROLLOUTS_IN_WORKDIR = os.path.join('data', 'rollouts')

# name -> (shape of one step, numpy dtype)
EpisodeSpec = Mapping[str, tuple[tuple[int, ...], Any]]


class EpisodeDataset(tfds.core.GeneratorBasedBuilder):
  """A TFDS builder for episodes produced by a Python iterable (not registered by name)."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, spec: EpisodeSpec, episodes: Iterable[Mapping[str, np.ndarray]],
               metadata: Mapping[str, Any], **kwargs):
    self._spec = spec
    self._episodes = episodes
    self._metadata = dict(metadata)
    super().__init__(file_format='array_record', **kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    # Frames are zlib-compressed (~10x smaller for rendered frames, ~3x for Doom's): the whole
    # serialized dataset sits in memory while it is written (`write_episodes`).
    features = tfds.features.FeaturesDict({
        name: tfds.features.Tensor(
            shape=(None, *shape), dtype=dtype,
            encoding=tfds.features.Encoding.ZLIB if len(shape) >= 2 else tfds.features.Encoding.NONE)
        for name, (shape, dtype) in self._spec.items()})
    return tfds.core.DatasetInfo(
        builder=self, features=features,
        description='Episodes written by wm_jax; one example = one episode, time first.',
        disable_shuffling=True,  # Example i is the i-th episode written.
        metadata=tfds.core.MetadataDict(self._metadata))

  def _split_generators(self, dl_manager):
    del dl_manager
    return {'train': self._generate_examples()}

  def _generate_examples(self):
    for index, episode in enumerate(self._episodes):
      missing = set(self._spec) - set(episode)
      if missing:
        raise ValueError(f'Episode {index} lacks the fields {sorted(missing)}.')
      yield index, {name: np.asarray(episode[name]) for name in self._spec}


def dataset_dir(path: str) -> str:
  """Where TFDS keeps a dataset written with `write_episodes(path, ...)`."""
  return os.path.join(path, 'episode_dataset', str(EpisodeDataset.VERSION))


def is_complete(path: str) -> bool:
  """Whether the dataset under `path` was written to the end: its `dataset_info.json` and every
  shard it lists are there."""
  directory = dataset_dir(path)
  try:
    with open(os.path.join(directory, 'dataset_info.json')) as f:
      splits = json.load(f)['splits']
  except (FileNotFoundError, json.JSONDecodeError, KeyError):
    return False
  for split in splits:
    count = len(split['shardLengths'])
    for shard in range(count):
      name = f'{EpisodeDataset.name}-{split["name"]}.array_record-{shard:05d}-of-{count:05d}'
      if not os.path.exists(os.path.join(directory, name)):
        return False
  return True


def write_episodes(path: str, spec: EpisodeSpec, episodes: Iterable[Mapping[str, np.ndarray]],
                   metadata: Mapping[str, Any]) -> None:
  """Writes the episodes as one TFDS split 'train' under `path` (absolute), atomically.

  `metadata` (JSON-able) is stored with the dataset and read back by `read_metadata`; stages
  use it to refuse data made with a different configuration. What an unfinished write left at
  `path` is removed first; a complete dataset there is refused (FileExistsError), as is an
  empty `episodes` (ValueError).
  """
  if is_complete(path):
    raise FileExistsError(f'A complete dataset is already at {dataset_dir(path)}.')
  leftovers = [dataset_dir(path), *glob.glob(os.path.join(os.path.dirname(dataset_dir(path)),
                                                          'incomplete.*'))]
  for leftover in filter(os.path.exists, leftovers):
    print(f'Removing {leftover}, left by an unfinished write.', flush=True)
    shutil.rmtree(leftover)
  episodes = iter(episodes)
  first = next(episodes, None)
  if first is None:
    raise ValueError(f'No episodes to write to {path}: the dataset would be empty.')
  episodes = itertools.chain([first], episodes)
  tfds.disable_progress_bar()  # The stages show their own progress.
  builder = EpisodeDataset(spec=spec, episodes=episodes, metadata=metadata,
                           data_dir=os.path.abspath(path))
  # TFDS holds serialized examples in memory up to MAX_MEM_BUFFER_SIZE (1 GB) and spills beyond
  # that through TensorFlow. Unshuffled, the buffer is only the examples in order, so it may
  # hold the whole dataset (10,000 Doom episodes: ~15 GB compressed) and TF stays unneeded.
  limit = tfds_shuffle.MAX_MEM_BUFFER_SIZE
  tfds_shuffle.MAX_MEM_BUFFER_SIZE = max(limit, 1 << 40)
  try:
    builder.download_and_prepare()
  finally:
    tfds_shuffle.MAX_MEM_BUFFER_SIZE = limit


def open_episodes(path: str, what: str = 'episodes', split: str = 'train'):
  """Random-access source of the episodes under `path`: `len(src)`, `src[i]` -> dict of arrays.
  `split` may slice the stored split the TFDS way ('train[:90%]').

  Raises FileNotFoundError for a missing or incomplete dataset, naming `what`. (An empty one
  cannot exist: `write_episodes` refuses to write it.)
  """
  directory = dataset_dir(path)
  if not is_complete(path):
    raise FileNotFoundError(
        f'No complete {what} dataset at {directory}. Run the stage that writes it first '
        '(wm_jax.world_models.run, or experiments/world_models.py --stage=...); a killed write '
        'leaves only a temporary folder.')
  return tfds.builder_from_directory(directory).as_data_source(split)


def read_metadata(path: str) -> dict[str, Any]:
  with open(os.path.join(dataset_dir(path), 'metadata.json')) as f:
    return json.load(f)


def summary(path: str) -> dict[str, int]:
  """{'episodes': how many} of the complete dataset under `path`."""
  return {'episodes': len(open_episodes(path))}
