"""What every benchmark shares: the device's measured matmul rate (the denominator of its
fraction of peak) and how a result is reported."""

import json
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np


def measured_matmul_flops(dtype=jnp.float32, size: int = 4096, repeats: int = 5) -> float:
  """Best FLOP/s of a [size, size] @ [size, size] matmul on the default device."""
  a = jax.random.normal(jax.random.key(0), (size, size), dtype)
  matmul = jax.jit(lambda x: x @ x)
  matmul(a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    matmul(a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * size**3 / best


def median_step_seconds(step, state, batch, steps: int) -> float:
  """Median wall time of `steps` calls of a train step `step(state, batch) -> (state, metrics)`,
  after one untimed call (compilation and warm-up)."""
  state, metrics = step(state, batch)
  jax.block_until_ready(metrics)
  times = []
  for _ in range(steps):
    start = time.perf_counter()
    state, metrics = step(state, batch)
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def report(result: dict[str, Any], out: str | None) -> None:
  """Prints `result` as JSON, headed by the device and jax version, and writes it to `out` too."""
  result = {'device': jax.devices()[0].device_kind, 'platform': jax.default_backend(),
            'jax': jax.__version__, **result}
  print(json.dumps(result, indent=1))
  if out:
    with open(out, 'w') as f:
      json.dump(result, f, indent=1)
