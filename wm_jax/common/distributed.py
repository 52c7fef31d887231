"""Multi-process runs (several hosts, or one process per GPU) on JAX's own runtime.

Every process runs the same command. `initialize` joins them with `jax.distributed.initialize`;
from then on `jax.devices()` lists every process's devices, the trainers' mesh spans them all
(`mesh.data` = the global device count), and each jitted step runs once over the whole mesh.
Each process reads its own shard of the data (grain's `ShardByJaxProcess`) and contributes its
rows of every global batch (`global_batch`). Orbax writes each checkpoint once for all processes
(each grain iterator's position beside it, a file per process: a run resumes on the same number
of processes, on any number of devices); process 0 alone writes logs, images and results
(`is_primary`), holds the workdir lock and sets unreadable checkpoints aside.

Join before anything starts JAX's backend: importing gymnax does (a module-level array), so
call `initialize` before importing `wm_jax.world_models` or `wm_jax.videogpt`. A single
process is the special case: process 0 of 1.
"""

from __future__ import annotations

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding

def initialize(coordinator_address: str | None = None, num_processes: int | None = None,
               process_id: int | None = None, auto: bool = False) -> None:
  """Joins this process to a multi-process run, before any other JAX call.

  With `coordinator_address` ('host:port' of process 0), `num_processes` and `process_id`, they
  are used as given (any machine, e.g. several processes on localhost); with `auto`, JAX reads
  them from the cluster's environment (Cloud TPU pods, SLURM, Open MPI, Kubernetes, or the
  JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID variables). With neither, this
  stays a single process.
  """
  explicit = (coordinator_address, num_processes, process_id)
  if any(value is not None for value in explicit):
    if any(value is None for value in explicit):
      raise ValueError('A multi-process run given explicitly needs all of coordinator_address, '
                       f'num_processes and process_id; got {explicit}.')
    jax.distributed.initialize(coordinator_address, num_processes, process_id)
  elif auto:
    try:
      jax.distributed.initialize()
    except ValueError as error:  # JAX found no cluster to read the processes from.
      raise ValueError(f'No multi-process cluster found in the environment ({error}). Give the '
                       'coordinator address, the number of processes and this process id '
                       'explicitly.') from error


def is_primary() -> bool:
  """Whether this process writes the run's logs, images and results (process 0)."""
  return jax.process_index() == 0


def local_batch_size(batch_size: int, key: str) -> int:
  """This process's rows of a global batch of `batch_size` (config `key`)."""
  count = jax.process_count()
  if batch_size % count:
    raise ValueError(f'{key}={batch_size} must divide evenly over the {count} processes.')
  return batch_size // count


def global_batch(sharding: NamedSharding, local: np.ndarray) -> jax.Array:
  """The global batch whose rows are the processes' `local` batches in process order, sharded
  with `sharding` (axis 0 over the mesh's 'data' axis)."""
  return jax.make_array_from_process_local_data(sharding, local)


def process_values(value: int) -> list[int]:
  """Every process's `value` (an int or a bool), in process order, on every process: how the
  others learn what only process 0 did (take the workdir lock) and how all check that they
  agree (the checkpoint they restored). A collective: every process calls it at the same point
  of the run, which makes it a barrier too."""
  if jax.process_count() == 1:
    return [int(value)]
  return [int(v) for v in multihost_utils.process_allgather(np.int32(value))]
