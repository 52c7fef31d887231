"""Every hot path timed after warm-up, in one table beside the device's measured matmul rate.

  python -m experiments.benchmarks [--quick] [--out=DIR]

Rows: V's, M's, the VQ-VAE's and the prior's train steps (float32 and bfloat16); a Doom-sized
CMA-ES generation in the dream; the prior's sampling with and without the key/value cache; C's
rollouts in the real (pixel CartPole) environment through V and M; host-game (DoomTakeCover)
collection. Each row: items per second, seconds per call, the FLOPs of one call (XLA's cost
analysis, or counted by hand where XLA cannot: see each module), the achieved FLOP/s and its
fraction of the best [4096, 4096] matmul on the same device in float32 and bfloat16, measured
in the same run. Prints the markdown table and, with --out,
writes DIR/benchmarks.json and DIR/benchmarks.md. The paper's sizes by default (about 13 minutes
on a 2-core CPU); --quick shrinks the batches and lengths (about 2 minutes).
"""

import json
import os

import jax.numpy as jnp
from absl import app, flags, logging

from experiments.benchmarks.collection import doom_collection
from experiments.benchmarks.common import environment, markdown_table, measured_matmul_flops
from experiments.benchmarks.dream_generation import dream_generation
from experiments.benchmarks.mdn_throughput import m_train_step, real_rollout
from experiments.benchmarks.vae_throughput import v_train_step
from experiments.benchmarks.videogpt_sampling import prior_rows
from experiments.benchmarks.vqvae_throughput import vqvae_train_step
from wm_jax.videogpt import configs as videogpt_configs

_QUICK = flags.DEFINE_bool('quick', False, 'Smaller batches and lengths: a few minutes on a CPU.')
_OUT = flags.DEFINE_string('out', None, 'Write benchmarks.json and benchmarks.md here too.')


def rows(quick: bool):
  """The rows, smaller with `quick`."""
  vqvae_config = videogpt_configs.get('vqvae_moving_digits')
  prior_config = videogpt_configs.get('videogpt_moving_digits')
  if quick:
    vqvae_config.data.batch_size = 4
    prior_config.data.batch_size = 2
  yield v_train_step(batch_size=32 if quick else 100)
  yield v_train_step(batch_size=32 if quick else 100, dtype='bfloat16')
  yield v_train_step(batch_size=32 if quick else 100, convs='xla', steps=3)
  yield m_train_step(num_streams=10 if quick else None)
  yield m_train_step(num_streams=10 if quick else None, dtype='bfloat16')
  for dtype in ('float32', 'bfloat16'):
    vqvae_config.model.dtype = dtype
    yield vqvae_train_step(vqvae_config, steps=2 if quick else 5)
  for dtype in ('float32', 'bfloat16'):
    prior_config.model.dtype = dtype
    yield from prior_rows(prior_config, latent_shape=(2, 8, 8) if quick else (4, 16, 16),
                          steps=2 if quick else 3, sampling=dtype == 'float32')
  yield dream_generation(steps=200 if quick else 2100, repeats=1 if quick else 2)
  yield real_rollout(num_episodes=16 if quick else 64, repeats=1 if quick else 3)
  for workers in sorted({1, os.cpu_count()}):  # Frames/s per worker and on every core.
    yield doom_collection(num_episodes=20 if quick else 200, num_workers=workers)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)
  peaks = {dtype: measured_matmul_flops(jnp.dtype(dtype)) for dtype in ('float32', 'bfloat16')}
  results = []
  for row in rows(_QUICK.value):
    results.append(row.as_dict(peaks))
    print(f"{row.name}: {results[-1]['items_per_s']:.4g} {row.unit}", flush=True)
  table = markdown_table(results, peaks)
  header = ', '.join(f'{k} {v}' for k, v in environment().items())
  peak_line = ', '.join(f'{dtype} {peak / 1e9:.1f} GFLOP/s' for dtype, peak in peaks.items())
  text = f'{header}; measured matmul peak: {peak_line}\n\n{table}\n'
  print(text)
  if _OUT.value:
    os.makedirs(_OUT.value, exist_ok=True)
    with open(os.path.join(_OUT.value, 'benchmarks.json'), 'w') as f:
      json.dump({**environment(), 'quick': _QUICK.value,
                 'matmul_peak_flop_per_s': peaks, 'rows': results}, f, indent=1)
    with open(os.path.join(_OUT.value, 'benchmarks.md'), 'w') as f:
      f.write(text)


if __name__ == '__main__':
  app.run(main)
