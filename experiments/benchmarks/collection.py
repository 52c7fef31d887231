"""Host-game collection (run by `python -m experiments.benchmarks`): the collect stage of
DoomTakeCover end to end, random-policy episodes played and written to a TFDS dataset in a
temporary workdir by `num_workers` ViZDoom processes (None: one per core), in frames per second."""

import os
import tempfile
import time

from experiments.benchmarks.common import Row
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models import Workdir, configs
from wm_jax.world_models.stages import collect


def doom_collection(num_episodes: int = 200, num_workers: int | None = None) -> Row:
  config = configs.get('doom_take_cover')
  config.collect.num_episodes = num_episodes
  config.env.num_workers = num_workers or os.cpu_count()
  config.mdn.update(num_streams=1, chunk_length=1)  # Any number of steps is enough here.
  with tempfile.TemporaryDirectory() as workdir:
    start = time.perf_counter()
    collect.collect(config, workdir)
    seconds = time.perf_counter() - start
    source = episodes_lib.open_episodes(Workdir(workdir).rollouts)
    frames = sum(len(source[i]['dones']) for i in range(len(source)))
  workers = config.env.num_workers
  return Row(f'host-game collection (DoomTakeCover), {workers} worker{"s" * (workers > 1)}',
             f'{num_episodes} random episodes', 'frames/s', frames,
             seconds, None, f'{frames / num_episodes:.0f} frames per episode; '
             'includes starting the workers and writing the dataset')
