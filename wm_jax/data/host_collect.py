"""Random-policy episodes of a host game (DoomTakeCover, CarRacing-v3), collected and written
by worker processes, so that frames/s grows with the number of workers and memory stays flat.

Episode i is seeded by child i of SeedSequence(config.seed), whichever worker plays it; episodes
shorter than `collect.min_steps` are dropped (the paper's Doom data: under 100 frames) until
`collect.num_episodes` are kept. Block b, the episodes b * k .. (b + 1) * k - 1
(k = `collect.episodes_per_chunk`), is one worker task: the worker plays them, compresses the
kept ones into a shard of its own (`wm_jax.data.episodes.write_shard`) and records what it kept,
so the parent only schedules. The dataset is the same, byte for byte, whatever the number of
workers and however often the collection was killed and resumed.

This module imports no JAX: a worker process starts in well under a second.
"""

from __future__ import annotations

import dataclasses
import glob
import itertools
import json
import multiprocessing
import os
import queue
import shutil
import sys
import time
from typing import Any, Mapping

import numpy as np
from tqdm import auto as tqdm

from wm_jax.common.config import check_same
from wm_jax.data import episodes as episodes_lib
from wm_jax.envs import games

# Under a host game's dataset path while it is collected: block b's shard `block-<b>` and, once
# complete, `block-<b>.json`; `metadata.json` the fingerprint of the config collecting them.
UNFINISHED_BLOCKS = 'unfinished_blocks'


@dataclasses.dataclass(frozen=True)
class _Block:
  """What a worker wrote for block b: episodes b * size .. (b + 1) * size - 1 tried, the kept
  ones (`kept[i]`: their index in the block) in `shard`."""
  shard: episodes_lib.Shard
  kept: tuple[int, ...]


def write_host_episodes(config, path: str, spec: episodes_lib.EpisodeSpec,
                        metadata: Mapping[str, Any]) -> list[int]:
  """Collects the first `collect.num_episodes` episodes of at least `collect.min_steps` steps
  into the dataset at `path`, in `env.num_workers` processes. Returns their lengths.

  A block is started only if the blocks before it may not keep enough, so at most one task per
  worker is in flight and none is wasted; blocks finished by an earlier, killed run are reused.
  """
  c = config.collect
  for name, value in (('env.max_steps', config.env.max_steps),
                      ('collect.max_action_repeat', c.max_action_repeat),
                      ('collect.min_steps', c.min_steps),
                      ('collect.episodes_per_chunk', c.episodes_per_chunk),
                      ('collect.num_episodes', c.num_episodes)):
    if value < 1:
      raise ValueError(f'{name} must be >= 1, got {value}.')
  if c.min_steps > config.env.max_steps:
    raise ValueError(f'collect.min_steps={c.min_steps} exceeds env.max_steps='
                     f'{config.env.max_steps}.')
  episodes_lib.prepare(path)
  directory = os.path.join(path, UNFINISHED_BLOCKS)
  blocks = _finished_blocks(directory, metadata)
  workers = config.env.num_workers or os.cpu_count()
  size, needed = c.episodes_per_chunk, c.num_episodes
  progress = tqdm.tqdm(total=needed, desc=f'collect {config.env.name}', unit='episode')
  progress.update(min(needed, sum(len(block.kept) for block in blocks.values())))
  if _last_block(blocks, needed) is None:
    _run_blocks(config, directory, spec, blocks, workers, progress)
  progress.close()
  last = _last_block(blocks, needed)
  shards = [blocks[index].shard for index in range(last)]
  remaining = needed - sum(len(shard.lengths) for shard in shards)
  final = blocks[last]
  shards.append(final.shard if remaining == len(final.kept) else episodes_lib.first_episodes(
      final.shard, remaining, os.path.join(directory, f'block-{last:05d}-first-{remaining}')))
  episodes_lib.publish(path, spec, shards, metadata)
  shutil.rmtree(directory)
  tried = last * size + final.kept[remaining - 1] + 1
  print(f'collect: kept {needed} of {tried} episodes (min_steps {c.min_steps})', flush=True)
  return [length for shard in shards for length in shard.lengths]


def _run_blocks(config, directory: str, spec: episodes_lib.EpisodeSpec,
                blocks: dict[int, _Block], workers: int, progress: tqdm.tqdm) -> None:
  """Plays blocks in `workers` processes, adding each finished one to `blocks`, until the
  blocks up to the last one needed are finished."""
  c = config.collect
  frames, start = 0, time.perf_counter()  # Of the kept episodes.
  done = queue.SimpleQueue()
  others = set(multiprocessing.active_children())
  pool = multiprocessing.get_context('spawn').Pool(workers, games.init_collector,
                                                  (config.env.name,))
  # Pool replaces a worker that dies and never reports its task: watch the first ones. (Not
  # covered: a worker killed while idle, waiting for a task, holds the task queue's lock
  # forever, and Pool.terminate below then blocks on it.)
  processes = [p for p in multiprocessing.active_children() if p not in others]
  try:
    running = set()
    while _last_block(blocks, c.num_episodes) is None:
      for index in _blocks_to_start(blocks, running, c.episodes_per_chunk, c.num_episodes,
                                    workers):
        task = (directory, index, config.seed, c.episodes_per_chunk, config.env.max_steps,
                c.max_action_repeat, c.min_steps, spec, os.getpid())
        pool.apply_async(_collect_block, (task,), callback=done.put, error_callback=done.put)
        running.add(index)
      result = _next_result(done, processes, running)
      if isinstance(result, BaseException):
        raise result
      index, block = result
      running.remove(index)
      blocks[index] = block
      frames += sum(block.shard.lengths)
      progress.update(min(len(block.kept), c.num_episodes - progress.n))
      progress.set_postfix(frames=f'{frames:,}',
                           frames_per_s=f'{frames / (time.perf_counter() - start):.0f}')
    pool.close()
    pool.join()  # Workers exit normally and close their games.
  finally:
    pool.terminate()
    pool.join()


def _next_result(done: queue.SimpleQueue, processes, running: set[int]):
  """The next block a worker finished (or the exception it raised); raises if a worker process
  died first (killed, out of memory, its game crashed), whose block would never report."""
  while True:
    try:
      return done.get(timeout=1.0)
    except queue.Empty:
      for process in processes:
        if process.exitcode is not None:
          raise RuntimeError(
              f'A collection worker died (exit code {process.exitcode}) while blocks '
              f'{sorted(running)} were being played; run the collection again to resume from '
              f'the finished blocks.')


def _finished_blocks(directory: str, metadata: Mapping[str, Any]) -> dict[int, _Block]:
  """The blocks a killed run finished in `directory` (made if absent), after checking they were
  collected with this config (up to `collect.num_episodes`)."""
  os.makedirs(directory, exist_ok=True)
  stored_path = os.path.join(directory, 'metadata.json')
  same_blocks = {key: value for key, value in metadata.items() if key != 'collect.num_episodes'}
  if os.path.exists(stored_path):
    with open(stored_path) as f:
      stored = {key: value for key, value in json.load(f).items()
                if key != 'collect.num_episodes'}
    check_same(stored, same_blocks, f'The unfinished collection in {directory} (delete it to '
               'collect from the start)')
  else:
    _write_json(stored_path, dict(metadata))
  blocks = {}
  for record in glob.glob(os.path.join(directory, 'block-*.json')):
    with open(record) as f:
      block = json.load(f)
    shard = episodes_lib.Shard(record[:-len('.json')], tuple(block['lengths']),
                               tuple(block['sizes']))
    if os.path.exists(shard.file):
      blocks[block['index']] = _Block(shard, tuple(block['kept']))
  return blocks


def _last_block(blocks: Mapping[int, _Block], needed: int) -> int | None:
  """The block holding the `needed`-th kept episode, once it and every block before it are
  finished; None before."""
  kept = 0
  for index in itertools.count():
    if index not in blocks:
      return None
    kept += len(blocks[index].kept)
    if kept >= needed:
      return index


def _blocks_to_start(blocks: Mapping[int, _Block], running: set[int], size: int, needed: int,
                     workers: int) -> list[int]:
  """The next blocks to start, up to one task per worker: those that the blocks before them
  may not be enough for (counting each running or unstarted block as keeping all it tries)."""
  starts, at_most = [], 0
  for index in itertools.count():
    if at_most >= needed or len(running) + len(starts) >= workers:
      return starts
    if index in blocks:
      at_most += len(blocks[index].kept)
    else:
      if index not in running:
        starts.append(index)
      at_most += size


def _collect_block(task) -> tuple[int, _Block]:
  """In a worker: plays block `index`'s episodes, writes the kept ones to its shard, then its
  record (written last, so a block without one is played again). Each file is written under a
  name of this process's and renamed into place, so a worker left by a killed parent cannot
  mix its writes with a resumed run's; such a worker exits at its next episode."""
  directory, index, seed, size, max_steps, max_action_repeat, min_steps, spec, parent = task
  kept = []

  def kept_episodes():
    for i in range(size):
      if os.getppid() != parent:
        sys.exit(0)  # Through the finalizers, which close the game.
      episode_seed = np.random.SeedSequence(seed, spawn_key=(index * size + i,))
      episode = games.collect_episode((int(episode_seed.generate_state(1)[0]), max_steps,
                                       max_action_repeat))
      if len(episode['frames']) >= min_steps:
        kept.append(i)
        yield episode

  file = os.path.join(directory, f'block-{index:05d}')
  shard = episodes_lib.write_shard(f'{file}.{os.getpid()}.tmp', spec, kept_episodes())
  os.replace(shard.file, file)
  shard = dataclasses.replace(shard, file=file)
  _write_json(file + '.json', {'index': index, 'kept': kept, 'lengths': list(shard.lengths),
                               'sizes': list(shard.sizes)})
  return index, _Block(shard, tuple(kept))


def _write_json(file: str, value) -> None:
  """Writes `value` to `file` whole or not at all (through a temporary file and a rename)."""
  temporary = f'{file}.{os.getpid()}.tmp'
  with open(temporary, 'w') as f:
    json.dump(value, f)
  os.replace(temporary, file)
