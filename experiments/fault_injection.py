"""Fault injection: kill -9 every stage of both pipelines at random points, resume, and check that
every final result equals that of an uninterrupted run (on the tiny configs).

  python -m experiments.fault_injection --kills_per_stage=3 --seed=0 --root=/tmp/faults

1. Runs every stage of the World Models pipeline (`default.py:tiny`, 2 iterative rounds) and of
   VideoGPT (a clips collection, the VQ-VAE, the prior) as subprocesses in `<root>/reference`,
   timing each; with `--warmup` (default) once before in `<root>/warmup`, so that the reference
   is timed with JAX's compilation cache as warm as the faulted attempts find it.
2. In fresh `<root>/faulted` dirs, starts each stage up to `--kills_per_stage` times and
   SIGKILLs its process group after its command's start-up time (imports and flag parsing:
   `--helpshort`, timed once per command) plus a uniform draw within the stage's work left (its
   reference time less the start-up and what earlier kills let through), so that kills land in
   the stage's own work (compiling, training, writing checkpoints and datasets); a stage that
   finishes first is not killed again. Then runs it to completion. A stage that fails ends its
   pipeline.
3. Compares the results.json files (without timing fields), the final checkpoint of every trained
   model (every leaf), the datasets (episode by episode) and the initial latents.

Prints a table and the comparison, also in `<root>/fault_injection.json`; exits non-zero if
anything failed or differs. Logs of every attempt are in `<root>/logs`.
"""

import contextlib
import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import time
import warnings
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from absl import app, flags, logging

from wm_jax.data import episodes
from wm_jax.world_models import STAGES, Workdir

_KILLS = flags.DEFINE_integer('kills_per_stage', 3, 'SIGKILLs sent to each stage before it is '
                              'run to completion.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the kill delays.')
_ROOT = flags.DEFINE_string('root', '/tmp/faults', 'Directory for the runs, logs and the report '
                            '(its warmup/, reference/, faulted/ and logs/ are replaced).')
_WARMUP = flags.DEFINE_bool('warmup', True, 'Run every stage once before the timed reference, so '
                            'that kill delays are drawn within warm run times.')

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, 'JAX_COMPILATION_CACHE_DIR': os.path.join(REPO, '.cache', 'jax')}
# Substrings of the results.json keys that are timings or throughput, not results.
TIMING_KEYS = ('seconds', 'per_s')
COMMIT_MARKER = 'commit_success.txt'


def stages(base: str) -> dict[str, list[tuple[str, list[str]]]]:
  """{pipeline: [(stage, python arguments), ...] in order} writing under `base`."""
  wm, clips = os.path.join(base, 'world_models'), os.path.join(base, 'clips')
  vqvae, prior = os.path.join(base, 'vqvae'), os.path.join(base, 'prior')
  world_models = ['-m', 'experiments.world_models',
                  '--config=wm_jax/world_models/configs/default.py:tiny']
  wm_args = world_models + ['--config.iterative.rounds=2', f'--workdir={wm}']
  clips_args = world_models + ['--config.collect.num_episodes=120', '--config.env.max_steps=24',
                                '--config.collect.episodes_per_chunk=40', f'--workdir={clips}',
                                '--stage=collect']
  return {
      'world_models': [(stage, wm_args + [f'--stage={stage}']) for stage in STAGES],
      'videogpt': [
          ('clips', clips_args),
          ('vqvae', ['-m', 'experiments.train_vqvae',
                     '--config=wm_jax/videogpt/configs/vqvae_cartpole.py:tiny',
                     f'--config.data.data_dir={clips}', f'--workdir={vqvae}']),
          ('prior', ['-m', 'experiments.train_videogpt',
                     '--config=wm_jax/videogpt/configs/videogpt_cartpole.py:tiny',
                     f'--config.vqvae.workdir={vqvae}', f'--config.data.data_dir={clips}',
                     f'--workdir={prior}']),
      ]}


def artifacts(base: str) -> dict[str, tuple[str, str]]:
  """{name: (kind, path)} of the final outputs under `base`."""
  wm = Workdir(os.path.join(base, 'world_models'))
  vqvae, prior = os.path.join(base, 'vqvae'), os.path.join(base, 'prior')
  return {
      'world_models/results.json': ('results', wm.results),
      'vqvae/results.json': ('results', os.path.join(vqvae, 'results.json')),
      'prior/results.json': ('results', os.path.join(prior, 'results.json')),
      'world_models/vae': ('checkpoint', wm.checkpoints('vae')),
      'world_models/mdn': ('checkpoint', wm.checkpoints('mdn')),
      'world_models/controller': ('checkpoint', wm.checkpoints('controller')),
      'world_models/round_1/mdn': ('checkpoint', wm.checkpoints('mdn', 1)),
      'world_models/round_1/controller': ('checkpoint', wm.checkpoints('controller', 1)),
      'vqvae/checkpoints': ('checkpoint', os.path.join(vqvae, 'checkpoints')),
      'prior/checkpoints': ('checkpoint', os.path.join(prior, 'checkpoints')),
      'world_models/data/rollouts': ('dataset', wm.rollouts),
      'world_models/data/latents': ('dataset', wm.latents()),
      'world_models/round_1/data/latents': ('dataset', wm.latents(1)),
      'clips/data/rollouts': ('dataset', Workdir(os.path.join(base, 'clips')).rollouts),
      'world_models/data/initial_latents.npz': ('npz', wm.initial_latents),
  }


def run_attempt(args: list[str], log: str, kill_after: float | None = None) -> dict[str, Any]:
  """Runs `python args` (killed with its process group after `kill_after` seconds if given),
  with stdout and stderr in `log`.out and `log`.err."""
  with open(f'{log}.out', 'w') as out, open(f'{log}.err', 'w') as err:
    start = time.perf_counter()
    process = subprocess.Popen([sys.executable, *args], cwd=REPO, env=ENV, stdout=out,
                               stderr=err, start_new_session=True)
    try:
      process.wait(timeout=kill_after)
    except subprocess.TimeoutExpired:
      with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
      process.wait()
  return {'seconds': round(time.perf_counter() - start, 2), 'returncode': process.returncode,
          'killed_while_running': process.returncode == -signal.SIGKILL, 'log': log}


def stderr_tail(log: str, lines: int = 20) -> str:
  with open(f'{log}.err') as f:
    return ''.join(f.readlines()[-lines:])


def run_uninterrupted(base: str, logs: str, label: str) -> dict[str, dict[str, Any]]:
  """Runs every stage uninterrupted; {'pipeline/stage': its attempt}. A failure ends its
  pipeline."""
  records = {}
  for pipeline, steps in stages(base).items():
    for stage, args in steps:
      name = f'{pipeline}/{stage}'
      records[name] = run_attempt(args, os.path.join(logs, f'{label}_{pipeline}_{stage}'))
      print(f'{label} {name}: {records[name]["seconds"]} s, exit {records[name]["returncode"]}',
            flush=True)
      if records[name]['returncode'] != 0:
        print(stderr_tail(records[name]['log']), flush=True)
        break
  return records


@functools.cache
def startup_seconds(module: str, logs: str) -> float:
  """How long `python -m module --helpshort` takes: the imports and flag parsing every attempt
  spends before its stage's work starts."""
  return run_attempt(['-m', module, '--helpshort'], os.path.join(logs, f'startup_{module}'))[
      'seconds']


def run_faulted(base: str, logs: str, reference: dict[str, dict[str, Any]], kills: int,
                rng: np.random.Generator) -> dict[str, dict[str, Any]]:
  """Kills each stage up to `kills` times, then runs it to completion; {'pipeline/stage':
  {'kills': [...], 'final': attempt, 'ok': bool}}. Each kill comes after the command's start-up
  time plus a uniform draw within the work left (the reference time less the start-up and the
  work earlier kills let through); a stage that finishes before its kill is not killed again
  (its output is complete). A stage that fails (or whose reference failed) ends its pipeline."""
  records = {}
  for pipeline, steps in stages(base).items():
    for stage, args in steps:
      name = f'{pipeline}/{stage}'
      if reference.get(name, {}).get('returncode') != 0:
        break
      log = os.path.join(logs, f'faulted_{pipeline}_{stage}')
      attempts = []
      startup = min(startup_seconds(args[1], logs), reference[name]['seconds'])
      work_left = reference[name]['seconds'] - startup
      for i in range(kills):
        worked = float(rng.uniform(0.0, work_left))
        delay = startup + worked
        attempts.append({'delay': round(delay, 2), **run_attempt(args, f'{log}_kill{i}', delay)})
        print(f'faulted {name}: kill {i} after {delay:.2f} s, '
              f'{"landed" if attempts[-1]["killed_while_running"] else "exited first"} '
              f'(exit {attempts[-1]["returncode"]})', flush=True)
        if not attempts[-1]['killed_while_running']:
          break
        work_left -= worked
      final = run_attempt(args, f'{log}_final')
      crashed = [a for a in attempts if a['returncode'] not in (0, -signal.SIGKILL)]
      ok = final['returncode'] == 0 and not crashed
      records[name] = {'kills': attempts, 'final': final, 'ok': ok}
      print(f'faulted {name}: resumed in {final["seconds"]} s, exit {final["returncode"]}',
            flush=True)
      for attempt in crashed + ([final] if final['returncode'] else []):
        print(f'{attempt["log"]}.err ends:\n{stderr_tail(attempt["log"])}', flush=True)
      if final['returncode'] != 0:
        break
  return records


def difference(a: Any, b: Any, path: str = '') -> str | None:
  """The path of the first difference between two nested dicts / lists of arrays, or None."""
  if isinstance(a, dict) and isinstance(b, dict):
    if a.keys() != b.keys():
      return f'{path or "/"} (keys {sorted(map(str, a.keys() ^ b.keys()))[:5]})'
    for key in sorted(a, key=str):
      found = difference(a[key], b[key], f'{path}/{key}')
      if found:
        return found
    return None
  if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
    if len(a) != len(b):
      return f'{path or "/"} (length {len(a)} vs {len(b)})'
    for i, (x, y) in enumerate(zip(a, b)):
      found = difference(x, y, f'{path}/{i}')
      if found:
        return found
    return None
  a, b = np.asarray(a), np.asarray(b)
  if a.dtype != b.dtype or a.shape != b.shape or not np.array_equal(
      a, b, equal_nan=a.dtype.kind in 'fc'):
    return path or '/'
  return None


def without_timings(tree: Any, dropped: set[str], path: str = '') -> Any:
  """`tree` without the dict keys containing one of `TIMING_KEYS` (their paths go to `dropped`)."""
  if isinstance(tree, dict):
    kept = {}
    for key, value in tree.items():
      if any(part in str(key) for part in TIMING_KEYS):
        dropped.add(f'{path}/{key}')
      else:
        kept[key] = without_timings(value, dropped, f'{path}/{key}')
    return kept
  if isinstance(tree, list):
    return [without_timings(value, dropped, f'{path}/{i}') for i, value in enumerate(tree)]
  return tree


def compare_results(ref: str, faulted: str, dropped: set[str]) -> str | None:
  trees = []
  for path in (ref, faulted):
    with open(path) as f:
      trees.append(without_timings(json.load(f), dropped))
  return difference(*trees)


def latest_step(directory: str) -> int:
  return max(int(name) for name in os.listdir(directory) if name.isdigit())


def read_item(path: str) -> Any:
  """A checkpoint item: the restored pytree (no target) as numpy, or {file: bytes} otherwise
  (a JSON item, e.g. the data iterator's state); without orbax's commit marker, which names the
  temporary directory."""
  if os.path.exists(os.path.join(path, '_METADATA')):
    return jax.tree.map(np.asarray, ocp.PyTreeCheckpointer().restore(path))
  files = {}
  for parent, _, names in os.walk(path):
    for name in set(names) - {COMMIT_MARKER}:
      with open(os.path.join(parent, name), 'rb') as f:
        files[os.path.relpath(os.path.join(parent, name), path)] = np.frombuffer(f.read(), np.uint8)
  return files


def compare_checkpoints(ref: str, faulted: str) -> str | None:
  """Compares the latest step's items (`state` and `data` of a Composite save, or `default`)."""
  steps = latest_step(ref), latest_step(faulted)
  if steps[0] != steps[1]:
    return f'latest step {steps[0]} vs {steps[1]}'
  ref_step, faulted_step = (os.path.join(d, str(steps[0])) for d in (ref, faulted))
  items = [sorted(n for n in os.listdir(d) if os.path.isdir(os.path.join(d, n)))
           for d in (ref_step, faulted_step)]
  if items[0] != items[1]:
    return f'step {steps[0]} items {items[0]} vs {items[1]}'
  for item in items[0]:
    found = difference(read_item(os.path.join(ref_step, item)),
                       read_item(os.path.join(faulted_step, item)), f'{steps[0]}/{item}')
    if found:
      return found
  return None


def compare_datasets(ref: str, faulted: str) -> str | None:
  found = difference(episodes.read_metadata(ref), episodes.read_metadata(faulted), 'metadata')
  if found:
    return found
  sources = episodes.open_episodes(ref), episodes.open_episodes(faulted)
  if len(sources[0]) != len(sources[1]):
    return f'{len(sources[0])} vs {len(sources[1])} episodes'
  for i in range(len(sources[0])):
    found = difference(sources[0][i], sources[1][i], f'episode {i}')
    if found:
      return found
  return None


def compare_npz(ref: str, faulted: str) -> str | None:
  with np.load(ref) as a, np.load(faulted) as b:
    return difference(dict(a), dict(b))


def compare(ref_base: str, faulted_base: str) -> tuple[dict[str, str], list[str]]:
  """{artifact: 'equal', 'DIFFERENT at ...' or 'MISSING ...'}, and the timing fields ignored."""
  dropped = set()
  comparers = {'results': functools.partial(compare_results, dropped=dropped),
               'checkpoint': compare_checkpoints, 'dataset': compare_datasets, 'npz': compare_npz}
  verdicts = {}
  faulted = artifacts(faulted_base)
  for name, (kind, ref_path) in artifacts(ref_base).items():
    missing = [p for p in (ref_path, faulted[name][1]) if not os.path.exists(p)]
    if missing:
      verdicts[name] = f'MISSING {missing[0]}'
      continue
    found = comparers[kind](ref_path, faulted[name][1])
    verdicts[name] = 'equal' if found is None else f'DIFFERENT at {found}'
  return verdicts, sorted(dropped)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO.
  # Restoring without a target reads each array's sharding from the checkpoint (same host).
  warnings.filterwarnings('ignore', message='Sharding info not provided')
  root = os.path.abspath(_ROOT.value)
  warmup_base, ref_base, faulted_base, logs = (
      os.path.join(root, d) for d in ('warmup', 'reference', 'faulted', 'logs'))
  for directory in (warmup_base, ref_base, faulted_base, logs):
    shutil.rmtree(directory, ignore_errors=True)
  os.makedirs(logs)
  start = time.perf_counter()
  if _WARMUP.value:
    run_uninterrupted(warmup_base, logs, 'warmup')
  reference = run_uninterrupted(ref_base, logs, 'reference')
  faulted = run_faulted(faulted_base, logs, reference, _KILLS.value,
                        np.random.default_rng(_SEED.value))
  verdicts, ignored = compare(ref_base, faulted_base)

  names = [f'{p}/{s}' for p, steps in stages(ref_base).items() for s, _ in steps]
  print(f'\n{"stage":<26} {"ref s":>6} {"kills":>5} {"landed":>6}  {"resumed ok":<10} delays (s)')
  for name in names:
    ref_seconds = reference.get(name, {}).get('seconds', float('nan'))
    record = faulted.get(name)
    if record is None:
      print(f'{name:<26} {ref_seconds:>6.1f} {"-":>5} {"-":>6}  {"not run":<10}')
      continue
    landed = sum(a['killed_while_running'] for a in record['kills'])
    delays = ', '.join(f'{a["delay"]:.1f}' for a in record['kills'])
    print(f'{name:<26} {ref_seconds:>6.1f} {len(record["kills"]):>5} {landed:>6}  '
          f'{"yes" if record["ok"] else "NO":<10} {delays}')
  print(f'\n{"artifact":<40} comparison')
  for name, verdict in verdicts.items():
    print(f'{name:<40} {verdict}')
  print(f'results.json fields ignored (timings): {", ".join(ignored) or "none"}')

  failed = ([n for n in names if n not in faulted or not faulted[n]['ok']]
            + [n for n, v in verdicts.items() if v != 'equal'])
  report = {'kills_per_stage': _KILLS.value, 'seed': _SEED.value, 'reference': reference,
            'faulted': faulted, 'comparison': verdicts, 'ignored_timing_fields': ignored,
            'failed': failed, 'seconds': round(time.perf_counter() - start, 1)}
  with open(os.path.join(root, 'fault_injection.json'), 'w') as f:
    json.dump(report, f, indent=2)
  print(f'{"FAILED: " + ", ".join(failed) if failed else "all stages resumed, all equal"} '
        f'({report["seconds"]} s; report in {os.path.join(root, "fault_injection.json")})')
  if failed:
    sys.exit(1)


if __name__ == '__main__':
  app.run(main)
