"""One process at a time on a workdir: a lock file naming its holder's host and pid.

Two runs writing one workdir would mix their checkpoints and metadata (one run's parameters
under the other's config). Every entry point that writes a workdir (`world_models.run` and its
stages, the VideoGPT trainers) holds `<workdir>/.lock` while it runs:

- a second process on the same workdir is refused with the holder's host and pid;
- a lock left by a killed process on this host (its pid no longer runs) is taken over;
- the holding process may enter again (a pipeline calling its stages);
- on a read-only workdir nothing can be written, so no lock is needed (evaluation of a finished
  workdir still runs);
- in a multi-process run (`wm_jax.common.distributed`) process 0 holds it for all.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import json
import os
import socket
import time
from typing import Callable, Iterator

from wm_jax.common import distributed

LOCK_FILE = '.lock'
_held: dict[str, int] = {}  # lock path -> how many times this process entered it


def _holder(path: str) -> dict | None:
  """The lock file's {'host', 'pid'}, or None if it is gone or not yet written."""
  try:
    with open(path) as f:
      return json.load(f)
  except (FileNotFoundError, json.JSONDecodeError):
    return None


def _running(pid: int) -> bool:
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Someone else's process: it runs.
    return True
  return True


def _stale(holder: dict | None, me: dict, unreadable_for: float) -> bool:
  """A lock whose process on this host is gone, or that stayed empty (its writer was killed
  between creating and writing it)."""
  if holder is None:
    return unreadable_for > 1.0
  return holder.get('host') == me['host'] and not _running(int(holder.get('pid', -1)))


def _acquire(path: str, me: dict) -> bool:
  """Takes the lock; False if the workdir cannot be written (read-only)."""
  unreadable_since = None
  for _ in range(1000):
    try:
      fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
    except FileExistsError:
      holder = _holder(path)
      now = time.monotonic()
      unreadable_since = (unreadable_since or now) if holder is None else None
      if _stale(holder, me, now - (unreadable_since or now)):
        with contextlib.suppress(FileNotFoundError):
          os.remove(path)
        continue
      if holder is None:  # Being written by its holder: look again.
        time.sleep(0.01)
        continue
      raise RuntimeError(
          f'The workdir {os.path.dirname(path)} is in use by process {holder.get("pid")} on '
          f'{holder.get("host")} (lock file {path}). Wait for it, use another workdir, or, if '
          'that process is gone (another host cannot be checked from here), delete the lock '
          'file.')
    except OSError as error:
      if error.errno in (errno.EROFS, errno.EACCES):
        return False
      raise
    with os.fdopen(fd, 'w') as f:
      json.dump(me, f)
    return True
  raise RuntimeError(f'Could not take the lock {path}: it keeps changing hands.')


@contextlib.contextmanager
def workdir_lock(workdir: str) -> Iterator[None]:
  """Holds `workdir`'s lock (creating the workdir) for the duration of the block."""
  workdir = os.path.abspath(workdir)
  path = os.path.join(workdir, LOCK_FILE)
  if _held.get(path):
    _held[path] += 1
    try:
      yield
    finally:
      _held[path] -= 1
    return
  acquired = False
  if distributed.is_primary():
    with contextlib.suppress(OSError):  # A read-only parent: _acquire finds out.
      os.makedirs(workdir, exist_ok=True)
    try:
      acquired = _acquire(path, {'host': socket.gethostname(), 'pid': os.getpid()})
    except BaseException:
      distributed.process_values(False)  # The other processes stop too, rather than wait.
      raise

  def release():
    if acquired:
      with contextlib.suppress(FileNotFoundError):
        os.remove(path)

  try:
    taken = distributed.process_values(True)[0]
  except BaseException:  # Another process is gone.
    release()
    raise
  if not taken:
    raise RuntimeError(f'Process 0 could not take the lock of the workdir {workdir}: see its '
                       'error.')
  _held[path] = 1
  try:
    yield
  finally:
    del _held[path]
    release()


def holds_workdir_lock(function: Callable) -> Callable:
  """Decorates `function(config, workdir, ...)` to run under `workdir_lock(workdir)`."""
  @functools.wraps(function)
  def locked(config, workdir: str, *args, **kwargs):
    with workdir_lock(workdir):
      return function(config, workdir, *args, **kwargs)
  return locked
