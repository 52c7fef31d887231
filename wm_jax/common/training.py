"""Pieces every trainer shares: the device mesh, batch placement, checkpoints, metrics logs, and
`fit`, the step loop of V, the VQ-VAE and the prior (logging, evaluation, checkpoints, NaN stop,
progress bar)."""

from __future__ import annotations

import collections
import contextlib
import gc
import json
import os
import re
import sys
import time
import warnings
from typing import Any, Callable, Iterator, Mapping

import grain.checkpoint  # Registers its orbax handler.
import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
from tqdm import auto as tqdm  # A live widget bar in notebooks (Colab), text elsewhere.
from jax.sharding import NamedSharding, PartitionSpec as P
from tensorboardX import SummaryWriter

from wm_jax.common import distributed
from wm_jax.common.config import check_same


def make_mesh(num_devices: int) -> jax.sharding.Mesh:
  """A 1D ('data',) mesh over the first `num_devices` devices (config key `mesh.data`)."""
  available = jax.device_count()
  if not 1 <= num_devices <= available:
    raise ValueError(f'mesh.data={num_devices}, but {available} device(s) are available.')
  if jax.process_count() > 1 and num_devices != available:
    raise ValueError(f'mesh.data={num_devices}: a run of {jax.process_count()} processes must use '
                     f'all {available} devices.')
  # Auto axes: XLA propagates the batch sharding through the model (no per-op annotations).
  return jax.make_mesh((num_devices,), ('data',), devices=jax.devices()[:num_devices],
                       axis_types=(jax.sharding.AxisType.Auto,))


def data_sharding(mesh: jax.sharding.Mesh, batch_size: int) -> NamedSharding:
  """Shards axis 0 of a batch over the mesh's 'data' axis."""
  if batch_size % mesh.shape['data']:
    raise ValueError(f'The batch size ({batch_size}) must divide evenly over mesh.data='
                     f'{mesh.shape["data"]} devices.')
  return NamedSharding(mesh, P('data'))


def replicated(mesh: jax.sharding.Mesh) -> NamedSharding:
  return NamedSharding(mesh, P())


def checkpoint_manager(directory: str, config_fingerprint: Mapping[str, Any],
                       max_to_keep: int = 2) -> ocp.CheckpointManager:
  """An orbax CheckpointManager that refuses a directory written under another configuration.

  The fingerprint is stored as the manager's metadata when the directory is first created.
  """
  directory = os.path.abspath(directory)
  manager = ocp.CheckpointManager(
      directory, options=ocp.CheckpointManagerOptions(max_to_keep=max_to_keep, create=True),
      metadata=dict(config_fingerprint))
  if manager.latest_step() is not None:
    check_same(manager.metadata().custom_metadata, config_fingerprint,
               f'The checkpoints in {directory}')
  return manager


def stored_fingerprint(directory: str) -> dict[str, Any] | None:
  """The config fingerprint stored with the checkpoints in `directory` (`checkpoint_manager`),
  or None if it holds none."""
  if not os.path.isdir(directory):
    return None
  manager = ocp.CheckpointManager(os.path.abspath(directory))
  stored = manager.metadata().custom_metadata if manager.latest_step() is not None else None
  manager.close()
  return None if stored is None else dict(stored)


def restore_newest(manager: ocp.CheckpointManager,
                   args: ocp.args.CheckpointArgs | Callable[[int], ocp.args.CheckpointArgs]
                   ) -> tuple[int, Any] | None:
  """(step, what `args` restores) of the newest checkpoint that restores, or None if there is
  none; `args` may be a function of the step. Unreadable checkpoints newer than it (a file
  deleted or truncated) are moved to `<directory>/../unreadable_checkpoints/` with a warning
  naming each, so that training resumes from it. If no checkpoint restores (a damaged
  directory, or a state of another structure), the newest one's error is raised and nothing is
  moved."""
  failures, step, restored = [], None, None
  for candidate in sorted(manager.all_steps(), reverse=True):
    try:
      with _quiet_failed_reads():
        restored = manager.restore(candidate, args=args(candidate) if callable(args) else args)
    except Exception as error:  # Orbax and tensorstore raise many kinds for a damaged file.
      failures.append((candidate, error))
      continue
    step = candidate
    break
  steps = distributed.process_values(-1 if step is None else step)
  if len(set(steps)) > 1:
    raise ValueError(f'The processes restored different checkpoints of {manager.directory} '
                     f'(process: step, -1 for none: {dict(enumerate(steps))}): a file that some '
                     'process cannot read. Restore it, or move the newer checkpoints out of the '
                     'directory to resume from an older one.')
  if step is None:
    if failures:
      raise failures[0][1]
    return None
  if failures:  # The same steps on every process; the files are shared: process 0 moves them.
    if distributed.is_primary():
      for bad_step, error in failures:
        _set_aside(manager, bad_step, error)
    distributed.process_values(0)  # The others wait for the move.
    manager.reload()
  return step, restored


def _set_aside(manager: ocp.CheckpointManager, step: int, error: Exception) -> None:
  directory = os.fspath(manager.directory)
  aside = os.path.join(os.path.dirname(directory), 'unreadable_checkpoints',
                       f'{step}.{time.strftime("%Y%m%d-%H%M%S")}')
  os.makedirs(os.path.dirname(aside), exist_ok=True)
  os.replace(os.path.join(directory, str(step)), aside)
  warnings.warn(f'Checkpoint {step} in {directory} cannot be read ({type(error).__name__}: '
                f'{str(error).splitlines()[0][:200]}); moved to {aside}, resuming from an '
                'earlier checkpoint.')


@contextlib.contextmanager
def _quiet_failed_reads():
  """Drops the "Exception ignored in <coroutine>" reports of the other reads of a restore that
  failed (orbax reads arrays concurrently; one damaged file fails them all, each with a long
  traceback)."""
  default_hook = sys.unraisablehook
  sys.unraisablehook = lambda report: None
  try:
    yield
  finally:
    gc.collect()  # The failed reads' coroutines report while the quiet hook is in place.
    sys.unraisablehook = default_hook


def restore_latest(manager: ocp.CheckpointManager, state, iterator):
  """The TrainState of the manager's newest readable checkpoint (`restore_newest`), or `state`
  if there is none, with this process's grain `iterator` set to the position saved beside it."""
  _check_process_count(manager)

  def args(step):
    # A checkpoint written before multi-process runs holds one JSON position (read below).
    single = _single_position(manager, step)
    return ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract(state)),
        **({} if os.path.exists(single) else
           {'data': grain.checkpoint.CheckpointRestore(iterator)}))
  restored = restore_newest(manager, args)
  if restored is None:
    return state
  step, items = restored
  if 'data' not in items:
    with open(_single_position(manager, step)) as f:
      iterator.set_state(json.load(f))
  return items['state']


def _check_process_count(manager: ocp.CheckpointManager) -> None:
  """Raises a ValueError if the newest checkpoint holds the data positions of a run of another
  number of processes (grain's `process_<i>-of-<n>.json`): they cannot be split or merged."""
  step = manager.latest_step()
  if step is None:
    return
  positions = os.path.join(manager.directory, str(step), 'data')
  names = os.listdir(positions) if os.path.isdir(positions) else []
  counts = {int(m.group(1)) for m in map(re.compile(r'process_\d+-of-(\d+)\.json').fullmatch,
                                         names) if m}
  if counts and jax.process_count() not in counts:
    raise ValueError(
        f'Checkpoint {step} in {manager.directory} was written by a run of {min(counts)} '
        f'process(es), and this run has {jax.process_count()}: each process resumes its own '
        f'data position. Resume it with {min(counts)} process(es) (any number of devices), or '
        'use a fresh --workdir.')


def _single_position(manager: ocp.CheckpointManager, step: int) -> str:
  return os.path.join(manager.directory, str(step), 'data', 'metadata')


def save(manager: ocp.CheckpointManager, step: int, state, iterator) -> None:
  """Saves a TrainState as checkpoint `step`, and beside it each process's grain iterator
  position (a file per process)."""
  manager.save(step, args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                             data=grain.checkpoint.CheckpointSave(iterator)))


def abstract(tree) -> Any:
  """Shape, dtype and sharding structs of `tree`'s arrays: what an orbax restore fills in. A leaf
  with no sharding (from `jax.eval_shape`) is restored replicated over every device of a
  multi-process run, else onto the default device, whatever device count wrote it."""
  if jax.process_count() > 1:
    default = replicated(make_mesh(jax.device_count()))
  else:
    default = jax.sharding.SingleDeviceSharding(jax.devices()[0])

  def struct(leaf):
    leaf = ocp.utils.to_shape_dtype_struct(leaf)
    if isinstance(leaf, jax.ShapeDtypeStruct) and leaf.sharding is None:
      leaf = jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=default)
    return leaf
  return jax.tree.map(struct, tree)


def restore_final(directory: str, config_fingerprint: Mapping[str, Any], final_step: int,
                  what: str, key: str, stage: str, args: ocp.args.CheckpointArgs) -> Any:
  """The checkpoint a finished stage left at `final_step` (config `key`), restored with `args`;
  an error naming the stage to run if it is absent or unreadable."""
  manager = checkpoint_manager(directory, config_fingerprint)
  latest = manager.latest_step()
  if latest != final_step:
    trained_past = latest is not None and latest > final_step
    raise FileNotFoundError(
        f'{what} is not trained to {key}={final_step} in {directory} (latest checkpoint: '
        f'{latest}). ' + (f'Set {key}={latest}, or use a fresh --workdir.' if trained_past else
                          f'Run the {stage} stage first.'))
  try:
    with _quiet_failed_reads():
      return manager.restore(final_step, args=args)
  except Exception as error:  # Orbax and tensorstore raise many kinds for a damaged file.
    raise RuntimeError(
        f"{what}'s final checkpoint {final_step} in {directory} cannot be read ({error}). Run "
        f'the {stage} stage again: it sets the damaged checkpoint aside and trains on from the '
        'one before it.') from error


def check_finite(tree, what: str, step: int, learning_rate_key: str) -> None:
  """Raises a FloatingPointError if a float leaf of `tree` holds NaN or inf: a diverged state
  is never checkpointed (the good checkpoints stay the newest)."""
  if not bool(_all_finite(tree)):
    raise FloatingPointError(f'{what} diverged by step {step}: its state holds NaN or inf '
                             f'values and is not checkpointed. Try a lower {learning_rate_key}.')


@jax.jit
def _all_finite(tree) -> jax.Array:
  leaves = [jnp.all(jnp.isfinite(x)) for x in jax.tree.leaves(tree)
            if jnp.issubdtype(x.dtype, jnp.inexact)]
  return jnp.all(jnp.stack(leaves)) if leaves else jnp.array(True)


class StepWindow:
  """A training loop's metrics since the last `flush`, kept on device until then, with the rate
  of examples per second. `add` waits for the previous step, so one step stays in flight while
  the host loads the next batch."""

  def __init__(self, what: str, learning_rate_key: str):
    self.what, self.learning_rate_key = what, learning_rate_key
    self._reset()

  def _reset(self):
    self.start, self.examples, self.pending = time.perf_counter(), 0, []

  def add(self, metrics: Mapping[str, jax.Array], examples: int) -> None:
    if self.pending:
      jax.block_until_ready(self.pending[-1])
    self.pending.append(metrics)
    self.examples += examples

  def flush(self, step: int) -> tuple[dict[str, float], float]:
    """(means of the metrics since the last flush, examples per second); raises a
    FloatingPointError naming the learning-rate key if the loss is not finite."""
    host = jax.device_get(self.pending)
    means = {k: float(np.mean([m[k] for m in host])) for k in host[0]}
    if not np.isfinite(means['loss']):
      raise FloatingPointError(f'{self.what} diverged at step {step}: loss {means["loss"]}. '
                               f'Try a lower {self.learning_rate_key}.')
    rate = self.examples / (time.perf_counter() - self.start)
    self._reset()
    return means, rate


class MetricsLog:
  """A stage's scalars, to TensorBoard (`<directory>/tensorboard`) and to
  `<directory>/metrics.jsonl`, which the evaluate stage reads back for curves and results.
  Written by process 0 of a multi-process run; the others' logs write nothing."""

  def __init__(self, directory: str):
    self.path = os.path.join(directory, 'metrics.jsonl')
    self.writer = (SummaryWriter(os.path.join(directory, 'tensorboard'))
                   if distributed.is_primary() else None)

  def write(self, step: int, scalars: Mapping[str, float]) -> None:
    if self.writer is None:
      return
    for name, value in scalars.items():
      self.writer.add_scalar(name, value, step)
    with open(self.path, 'a') as f:
      f.write(json.dumps({'step': int(step), **{k: float(v) for k, v in scalars.items()}}) + '\n')

  def image(self, name: str, image: np.ndarray, step: int) -> None:
    if self.writer is not None:
      self.writer.add_image(name, image, step, dataformats='HWC')

  def close(self) -> None:
    if self.writer is not None:
      self.writer.close()


def write_results(path: str, results: Mapping[str, Any]) -> None:
  """Writes `results` as JSON to `path`, atomically: a run's last output, whose presence means
  every other output is there. In a multi-process run process 0 writes it."""
  if not distributed.is_primary():
    return
  with open(path + '.tmp', 'w') as f:
    json.dump(results, f, indent=2)
  os.replace(path + '.tmp', path)


def read_metrics(path: str) -> dict[str, tuple[np.ndarray, np.ndarray]]:
  """A metrics.jsonl as {name: (steps, values)} sorted by step; where a resumed run wrote a step
  again, its last value counts. A missing file reads as no series."""
  series = collections.defaultdict(dict)
  if not os.path.exists(path):
    return {}
  with open(path) as f:
    for line in f:
      row = json.loads(line)
      step = row.pop('step')
      for name, value in row.items():
        series[name][step] = value
  return {name: (np.array(sorted(values)), np.array([values[s] for s in sorted(values)]))
          for name, values in series.items()}


def last_metrics(directory: str) -> dict[str, float]:
  """Each series' last value in `directory`/metrics.jsonl, and the last step written."""
  series = read_metrics(os.path.join(directory, 'metrics.jsonl'))
  last = {name: float(values[-1]) for name, (_, values) in series.items()}
  return {'step': int(max((steps[-1] for steps, _ in series.values()), default=0)), **last}


def fit(state, step_fn: Callable, batches: Iterator, manager: ocp.CheckpointManager,
        log: MetricsLog, *, num_steps: int, log_every: int, eval_every: int,
        checkpoint_every: int, place: Callable, what: str, learning_rate_key: str,
        prefix: str = 'train', rate_name: str = 'examples_per_s', rate_scale: float = 1.0,
        show: tuple[str, ...] = ('loss',), evaluate: Callable | None = None) -> tuple[Any, Any]:
  """Trains from `state.step` to `num_steps` with `state, metrics = step_fn(state,
  place(batch))` over the checkpointable grain iterator `batches`.

  Every `log_every` steps the metrics' means (and examples per second x `rate_scale`, as
  `rate_name`) go to `log` under `prefix/`, and those named in `show` to the progress bar; a
  non-finite loss stops the run (`StepWindow`). Every `eval_every` steps `evaluate(state, step)`
  runs, every `checkpoint_every` steps the state and the iterator's position are saved (never a
  state holding NaN: `check_finite`); the last step does all three. Pending saves finish before
  it returns or raises. Returns (state, the last evaluation, or None if no step ran).
  """
  first = int(state.step)
  progress = tqdm.tqdm(initial=first, total=num_steps, desc=f'train {what}', unit='step')
  window = StepWindow(what, learning_rate_key)
  evaluation = None
  try:
    for step in range(first + 1, num_steps + 1):
      batch = next(batches)
      state, metrics = step_fn(state, place(batch))
      window.add(metrics, len(jax.tree.leaves(batch)[0]) * jax.process_count())  # Global rows.
      last = step == num_steps
      if step % log_every == 0 or last:
        means, rate = window.flush(step)
        log.write(step, {**{f'{prefix}/{k}': v for k, v in means.items()},
                         f'{prefix}/{rate_name}': rate * rate_scale})
        progress.set_postfix({**{k: f'{means[k]:.4g}' for k in show},
                              rate_name: f'{rate * rate_scale:.0f}'})
      if evaluate is not None and (step % eval_every == 0 or last):
        evaluation = evaluate(state, step)
      if step % checkpoint_every == 0 or last:
        check_finite(state, what, step, learning_rate_key)
        save(manager, step, state, batches)
      progress.update(1)
  finally:
    progress.close()
    manager.wait_until_finished()
  return state, evaluation
