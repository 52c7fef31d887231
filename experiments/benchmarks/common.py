"""What every benchmark shares: a result row, timing after warm-up, the FLOPs of a compiled call
(XLA's cost analysis), the device's measured matmul rate (the denominator of a fraction of peak)
and the JSON and markdown report."""

from __future__ import annotations

import dataclasses
import json
import os
import platform
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np


@dataclasses.dataclass
class Row:
  """One hot path: `items` (of `unit`) per call, the median `seconds` per call after warm-up,
  and the FLOPs one call executes (None where XLA cannot count them, e.g. host code)."""
  name: str
  size: str
  unit: str
  items: float
  seconds: float
  flop: float | None
  notes: str = ''

  def as_dict(self, peaks: dict[str, float]) -> dict[str, Any]:
    rate = None if self.flop is None else self.flop / self.seconds
    return {**dataclasses.asdict(self), 'items_per_s': self.items / self.seconds,
            'achieved_flop_per_s': rate,
            **{f'fraction_of_{dtype}_peak': None if rate is None else rate / peak
               for dtype, peak in peaks.items()}}


def measured_matmul_flops(dtype=jnp.float32, size: int = 4096, repeats: int = 5) -> float:
  """Best FLOP/s of a [size, size] @ [size, size] matmul in `dtype` on the default device."""
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def compiled_flops(jitted, *args) -> float:
  """The FLOPs XLA's cost analysis counts for one call of `jitted(*args)` (args may be abstract)."""
  return float(jitted.lower(*args).compile().cost_analysis()['flops'])


def median_seconds(call: Callable[[], Any], repeats: int) -> float:
  """Median wall time of `call()` (its outputs waited for), after one untimed call."""
  jax.block_until_ready(call())
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(call())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def median_step_seconds(step, state, batch, steps: int) -> float:
  """Median wall time of `steps` calls of a train step `step(state, batch) -> (state, metrics)`
  (the state carried on: the steps donate it), after one untimed call."""
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def environment() -> dict[str, Any]:
  """The device, the host's CPU model and cores, and the JAX version."""
  return {'device': jax.devices()[0].device_kind, 'platform': jax.default_backend(),
          'device_count': jax.device_count(), 'host_cpu': _cpu_model(),
          'host_cores': os.cpu_count(), 'jax': jax.__version__}


def _cpu_model() -> str:
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or 'unknown'


def report(result: dict[str, Any], out: str | None) -> None:
  """Prints `result` as JSON, headed by the device and jax version, and writes it to `out` too."""
  result = {**environment(), **result}
  print(json.dumps(result, indent=1))
  if out:
    with open(out, 'w') as f:
      json.dump(result, f, indent=1)


def markdown_table(rows: list[dict[str, Any]], peaks: dict[str, float]) -> str:
  """The rows (`Row.as_dict`) as a markdown table with each one's fraction of the peaks."""
  def number(x, digits=3):
    return '-' if x is None else f'{x:.{digits}g}'

  def percent(x):
    return '-' if x is None else f'{100 * x:.1f}%'
  dtypes = list(peaks)
  lines = ['| hot path | size | throughput | s / call | GFLOP / call | GFLOP/s | ' +
           ' | '.join(f'% of {d} peak' for d in dtypes) + ' |',
           '|---|---|---|---|---|---|' + '---|' * len(dtypes)]
  for r in rows:
    flop = None if r['flop'] is None else r['flop'] / 1e9
    rate = None if r['achieved_flop_per_s'] is None else r['achieved_flop_per_s'] / 1e9
    lines.append(f"| {r['name']} | {r['size']} | {number(r['items_per_s'], 4)} {r['unit']} | "
                 f"{number(r['seconds'])} | {number(flop)} | {number(rate)} | " +
                 ' | '.join(percent(r[f'fraction_of_{d}_peak']) for d in dtypes) + ' |')
  return '\n'.join(lines)
