"""The device's measured matmul rate: the denominator of every benchmark's fraction of peak."""

import time

import jax
import jax.numpy as jnp


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
