"""Episodes on disk: a TFDS dataset (array_record, no TensorFlow) of per-step arrays.

One example is one episode: a dict of arrays whose leading axis is time, e.g. pixel rollouts
(`frames` [T, 64, 64, 3] uint8, `actions` [T], `rewards` [T], `dones` [T]) or V's encodings
(`mu`, `logvar` [T, z], ...). The features come from the `EpisodeSpec` handed to the writer.

Shards are written one episode at a time (`write_shard`), so memory stays that of one episode
(of one shard where `first_episodes` cuts one) whatever the dataset's size, and by whichever
process makes the episodes (host-game collection writes one shard per worker task). `publish`
then names them, writes TFDS's metadata in a temporary folder (`incomplete.*`) and renames it
into place, so a killed write never leaves a dataset that `open_episodes` takes for complete;
the next write removes what a killed write or a damaged dataset (a shard or `dataset_info.json`
deleted) left.
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import uuid
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import tensorflow_datasets as tfds
from array_record.python import array_record_module
from tensorflow_datasets.core import example_serializer

# Where a World Models workdir keeps its collected rollouts (its collect stage writes them; the
# VideoGPT source 'world_models' reads them).
ROLLOUTS_IN_WORKDIR = os.path.join('data', 'rollouts')
DATASET_NAME = 'episode_dataset'
VERSION = '1.0.0'
# `write_episodes` starts a new shard after this many serialized bytes.
SHARD_BYTES = 256 << 20

# name -> (shape of one step, numpy dtype)
EpisodeSpec = Mapping[str, tuple[tuple[int, ...], Any]]


@dataclasses.dataclass(frozen=True)
class Shard:
  """A written shard file and, per episode in it, its steps and serialized bytes."""
  file: str
  lengths: tuple[int, ...]
  sizes: tuple[int, ...]


def features(spec: EpisodeSpec) -> tfds.features.FeaturesDict:
  """The TFDS features of `spec`: arrays of 2+ dims per step (frames) are zlib-compressed
  (~10x smaller for rendered frames, ~3x for Doom's)."""
  return tfds.features.FeaturesDict({
      name: tfds.features.Tensor(
          shape=(None, *shape), dtype=dtype,
          encoding=tfds.features.Encoding.ZLIB if len(shape) >= 2 else tfds.features.Encoding.NONE)
      for name, (shape, dtype) in spec.items()})


def dataset_dir(path: str) -> str:
  """Where the dataset written to `path` lives (TFDS's layout: <path>/<name>/<version>)."""
  return os.path.join(path, DATASET_NAME, VERSION)


def _shard_name(index: int, count: int) -> str:
  return f'{DATASET_NAME}-train.array_record-{index:05d}-of-{count:05d}'


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
    if not all(os.path.exists(os.path.join(directory, _shard_name(i, count)))
               for i in range(count)):
      return False
  return True


def prepare(path: str) -> None:
  """Makes way for a new dataset at `path` (absolute): refuses a complete one there
  (FileExistsError) and removes what an unfinished write left."""
  if is_complete(path):
    raise FileExistsError(f'A complete dataset is already at {dataset_dir(path)}.')
  parent = os.path.dirname(dataset_dir(path))
  for leftover in filter(os.path.exists, [dataset_dir(path),
                                          *glob.glob(os.path.join(parent, 'incomplete.*'))]):
    print(f'Removing {leftover}, left by an unfinished write.', flush=True)
    shutil.rmtree(leftover)
  os.makedirs(parent, exist_ok=True)


def _new_incomplete_dir(path: str) -> str:
  """A new temporary folder beside the dataset's (`prepare` removes what a killed write left)."""
  directory = os.path.join(os.path.dirname(dataset_dir(path)), f'incomplete.{uuid.uuid4().hex}')
  os.makedirs(directory)
  return directory


def write_shard(file: str, spec: EpisodeSpec, episodes: Iterable[Mapping[str, np.ndarray]],
                max_bytes: int | None = None) -> Shard:
  """Writes `episodes` in order to the array_record `file`, stopping after the episode that
  brings it to `max_bytes` (the rest of the iterator is left unread)."""
  encoder = features(spec)
  serializer = example_serializer.ExampleSerializer(encoder.get_serialized_info())
  writer = array_record_module.ArrayRecordWriter(file, 'group_size:1')  # TFDS's options.
  lengths, sizes = [], []
  try:
    for episode in episodes:
      missing = set(spec) - set(episode)
      if missing:
        raise ValueError(f'Episode {len(lengths)} of {file} lacks the fields {sorted(missing)}.')
      example = encoder.encode_example({name: np.asarray(episode[name]) for name in spec})
      # Fields in sorted order: the same bytes from any process (protobuf maps are unordered).
      record = serializer.get_tf_example(example).SerializeToString(deterministic=True)
      writer.write(record)
      lengths.append(len(episode[next(iter(spec))]))
      sizes.append(len(record))
      if max_bytes is not None and sum(sizes) >= max_bytes:
        break
  finally:
    writer.close()
  return Shard(file, tuple(lengths), tuple(sizes))


def first_episodes(shard: Shard, count: int, file: str) -> Shard:
  """Copies the first `count` episodes of `shard` into `file`, byte for byte."""
  reader = array_record_module.ArrayRecordReader(shard.file)
  try:
    records = reader.read(0, count)
  finally:
    reader.close()
  writer = array_record_module.ArrayRecordWriter(file, 'group_size:1')
  try:
    for record in records:
      writer.write(record)
  finally:
    writer.close()
  return Shard(file, shard.lengths[:count], shard.sizes[:count])


def publish(path: str, spec: EpisodeSpec, shards: Sequence[Shard],
            metadata: Mapping[str, Any]) -> None:
  """Makes `shards` (in order, their files left in place) the dataset at `path`, atomically.

  `metadata` (JSON-able) is stored with the dataset and read back by `read_metadata`; stages
  use it to refuse data made with a different configuration. An empty dataset is refused.
  """
  if not sum(len(shard.lengths) for shard in shards):
    raise ValueError(f'No episodes to write to {path}: the dataset would be empty.')
  shards = [shard for shard in shards if shard.lengths]
  target = dataset_dir(path)
  staging = _new_incomplete_dir(path)
  for index, shard in enumerate(shards):
    name = os.path.join(staging, _shard_name(index, len(shards)))
    try:
      os.link(shard.file, name)
    except OSError:  # A filesystem without hard links, or the shard on another one.
      shutil.copyfile(shard.file, name)
  identity = tfds.core.dataset_info.DatasetIdentity(
      name=DATASET_NAME, version=tfds.core.Version(VERSION), data_dir=staging,
      module_name=__name__)
  info = tfds.core.DatasetInfo(
      builder=identity, features=features(spec),
      description='Episodes written by wm_jax; one example = one episode, time first.',
      disable_shuffling=True,  # Example i is the i-th episode written.
      metadata=tfds.core.MetadataDict(metadata))
  info.set_file_format(tfds.core.FileFormat.ARRAY_RECORD)
  template = tfds.core.ShardedFileTemplate(
      data_dir=staging, dataset_name=DATASET_NAME, split='train', filetype_suffix='array_record')
  info.set_splits(tfds.core.SplitDict([tfds.core.SplitInfo(
      name='train', shard_lengths=[len(shard.lengths) for shard in shards],
      num_bytes=sum(sum(shard.sizes) for shard in shards), filename_template=template)]))
  info.write_to_directory(staging)
  os.rename(staging, target)


def write_episodes(path: str, spec: EpisodeSpec, episodes: Iterable[Mapping[str, np.ndarray]],
                   metadata: Mapping[str, Any]) -> None:
  """Writes the episodes as one TFDS split 'train' under `path` (absolute), atomically, in
  shards of about `SHARD_BYTES`.

  What an unfinished write left at `path` is removed first; a complete dataset there is
  refused (FileExistsError), as is an empty `episodes` (ValueError).
  """
  prepare(path)
  work = _new_incomplete_dir(path)
  episodes = iter(episodes)
  shards = []
  while not shards or len(shards[-1].lengths):
    shards.append(write_shard(os.path.join(work, f'shard-{len(shards)}'), spec, episodes,
                              SHARD_BYTES))
  publish(path, spec, shards, metadata)
  shutil.rmtree(work)


def open_episodes(path: str, what: str = 'episodes', split: str = 'train'):
  """Random-access source of the episodes under `path`: `len(src)`, `src[i]` -> dict of arrays.
  `split` may slice the stored split the TFDS way ('train[:90%]').

  Raises FileNotFoundError for a missing or incomplete dataset, naming `what`. (An empty one
  cannot exist: `publish` refuses to write it.)
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
