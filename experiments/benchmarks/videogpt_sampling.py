"""The VideoGPT prior's speed: training tokens/s with the fraction of the device's measured
matmul rate, and sampling tokens/s with the key/value cache against recomputing the whole
sequence for every token.

  python -m experiments.benchmarks.videogpt_sampling [--config=wm_jax/videogpt/configs/videogpt_moving_digits.py]
      [--latent_shape=4,16,16 --num_codes=512 --code_dim=64] [--batch=2] [--steps=5] [--out=f.json]

Runs on random parameters and codes (no VQ-VAE run needed) at the Moving-MNIST latent size by
default (16x64x64 clips -> 4x16x16 codes of a 512 x 64 codebook). Training: the jitted prior
loss + gradient + Adam on a batch of `data.batch_size`, median of `--steps`; its FLOPs are XLA's
cost analysis of what executes (masked scores in visible blocks included), so the fraction of
peak counts executed, not useful, work. Sampling: `sample_codes` compiled once per mode; the cached mode timed as
the median of `--steps` calls, the uncached one (L full forward passes) once. Sampling FLOPs
per token are counted by hand: 2 x (parameters used per token) + 4 x L x width per layer
(scores and weighted values over the whole masked cache).
"""

import functools
import math
import os
import time

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl import app, flags
from ml_collections import config_flags

from experiments.benchmarks.common import measured_matmul_flops, report
from wm_jax.videogpt import configs
from wm_jax.videogpt.models.video_gpt import VideoGPT, sample_codes

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(configs.__file__), 'videogpt_moving_digits.py'),
    'A VideoGPT config file.', lock_config=True)
_LATENT = flags.DEFINE_list('latent_shape', ['4', '16', '16'], "The codes' T', H', W'.")
_NUM_CODES = flags.DEFINE_integer('num_codes', 512, 'Codebook size.')
_CODE_DIM = flags.DEFINE_integer('code_dim', 64, 'Codebook vector size.')
_BATCH = flags.DEFINE_integer('batch', 2, 'Videos sampled at once.')
_STEPS = flags.DEFINE_integer('steps', 5, 'Timed train steps and cached sampling calls.')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON here too.')


def _timed(fn, *args) -> float:
  start = time.perf_counter()
  jax.block_until_ready(fn(*args))
  return time.perf_counter() - start


def main(argv):
  del argv
  config = _CONFIG.value
  m = config.model
  latent = tuple(int(n) for n in _LATENT.value)
  length, batch = math.prod(latent), config.data.batch_size
  if m.cond_frames:
    raise app.UsageError('The benchmark times the unconditioned prior: set model.cond_frames=0.')
  model = VideoGPT(latent_shape=latent, num_codes=_NUM_CODES.value, **m)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  codebook = jax.random.normal(keys[0], (_NUM_CODES.value, _CODE_DIM.value))
  codes = jax.random.randint(keys[1], (batch, *latent), 0, _NUM_CODES.value)
  params = model.init(keys[2], codebook[codes[:1]])['params']
  params['output_proj']['kernel'] = 0.1 * jax.random.normal(
      keys[3], params['output_proj']['kernel'].shape)
  num_params = sum(x.size for x in jax.tree.leaves(params))

  tx = optax.adam(config.train.learning_rate)

  @jax.jit
  def train_step(params, opt_state, codes):
    def loss_fn(params):
      logits = model.apply({'params': params}, codebook[codes], train=True,
                           rngs={'dropout': jax.random.PRNGKey(0)})
      return optax.softmax_cross_entropy_with_integer_labels(logits, codes).mean()
    grads = jax.grad(loss_fn)(params)
    updates, opt_state = tx.update(grads, opt_state)
    return optax.apply_updates(params, updates), opt_state

  opt_state = tx.init(params)
  train_flops = float(train_step.lower(params, opt_state, codes).compile().cost_analysis()['flops'])
  jax.block_until_ready(train_step(params, opt_state, codes))
  train_seconds = float(np.median([_timed(train_step, params, opt_state, codes)
                                   for _ in range(_STEPS.value)]))

  sample = {cached: functools.partial(sample_codes, model, params, codebook,
                                      batch_size=_BATCH.value, cached=cached)
            for cached in (True, False)}
  first_call_s = {cached: _timed(sample[cached], jax.random.PRNGKey(0))  # compile + run
                  for cached in (True, False)}
  cached_s = float(np.median([_timed(sample[True], jax.random.PRNGKey(i))
                              for i in range(1, _STEPS.value + 1)]))
  uncached_s = _timed(sample[False], jax.random.PRNGKey(1))
  same = bool(jnp.array_equal(sample[True](jax.random.PRNGKey(1)),
                              sample[False](jax.random.PRNGKey(1))))

  embedding_params = sum(
      x.size for x in jax.tree.leaves(params['positions'])) + params['start'].size
  flops_per_token = 2 * (num_params - embedding_params) + 4 * length * m.width * m.num_layers
  peak = measured_matmul_flops()
  train_rate = train_flops / train_seconds
  sample_rate = flops_per_token * _BATCH.value * length / cached_s
  report({
      'latent_shape': list(latent), 'codebook': [_NUM_CODES.value, _CODE_DIM.value],
      'model': {'width': m.width, 'num_heads': m.num_heads, 'num_layers': m.num_layers,
                'attention': m.attention, 'attention_impl': m.attention_impl,
                'parameters': int(num_params)},
      'train': {'batch_size': batch, 'seconds_per_step': train_seconds,
                'tokens_per_s': batch * length / train_seconds,
                'executed_gflop_per_step': train_flops / 1e9,
                'achieved_gflop_per_s': train_rate / 1e9,
                'fraction_of_peak': train_rate / peak},
      'sampling': {'batch_size': _BATCH.value, 'tokens': _BATCH.value * length,
                   'cached_seconds': cached_s, 'uncached_seconds': uncached_s,
                   'cached_tokens_per_s': _BATCH.value * length / cached_s,
                   'uncached_tokens_per_s': _BATCH.value * length / uncached_s,
                   'speedup': uncached_s / cached_s, 'same_codes': same,
                   'first_call_seconds': {'cached': first_call_s[True],
                                          'uncached': first_call_s[False]},
                   'gflop_per_token': flops_per_token / 1e9,
                   'cached_fraction_of_peak': sample_rate / peak},
      'matmul_peak_gflop_per_s': peak / 1e9,
  }, _OUT.value)


if __name__ == '__main__':
  app.run(main)
