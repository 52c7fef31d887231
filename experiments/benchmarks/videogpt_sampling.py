"""The VideoGPT prior's speed (run by `python -m experiments.benchmarks`): training tokens/s,
and sampling tokens/s with the key/value cache against recomputing the whole sequence for every
token.

Runs on random parameters and codes (no VQ-VAE run needed), at the Moving-MNIST latent size by
default (16x64x64 clips -> 4x16x16 codes of a 512 x 64 codebook). Training: the jitted prior
loss + gradient + Adam on a batch of `data.batch_size`; its FLOPs are XLA's cost analysis of
what executes (masked scores in visible blocks included), so the fraction of peak counts
executed, not useful, work. Sampling: `sample_codes` compiled once per mode, both modes drawing
the same codes. Sampling FLOPs per token are counted by hand: 2 x (parameters used per token) +
4 x L x width per layer (scores and weighted values over the whole masked cache).
"""

import functools
import math

import jax
import jax.numpy as jnp
import ml_collections
import optax

from experiments.benchmarks.common import Row, compiled_flops, median_seconds
from wm_jax.videogpt.models.video_gpt import VideoGPT, sample_codes


def prior_rows(config: ml_collections.ConfigDict, latent_shape=(4, 16, 16), num_codes: int = 512,
               code_dim: int = 64, sample_batch: int = 2, steps: int = 3,
               sampling: bool = True) -> list[Row]:
  """[train step, cached sampling, uncached sampling] of the unconditioned prior of `config`
  (without `sampling`, the train step alone)."""
  m = config.model
  if m.cond_frames:
    raise ValueError('The benchmark times the unconditioned prior: set model.cond_frames=0.')
  latent = tuple(latent_shape)
  length, batch = math.prod(latent), config.data.batch_size
  model = VideoGPT(latent_shape=latent, num_codes=num_codes, **m)
  keys = jax.random.split(jax.random.PRNGKey(0), 4)
  codebook = jax.random.normal(keys[0], (num_codes, code_dim))
  codes = jax.random.randint(keys[1], (batch, *latent), 0, num_codes)
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
  train_flop = compiled_flops(train_step, params, opt_state, codes)
  train_seconds = median_seconds(lambda: train_step(params, opt_state, codes), steps)
  size = (f"{'x'.join(map(str, latent))} codes of {num_codes}, width {m.width}, "
          f'{m.num_layers} layers, {m.attention} attention')
  train_row = Row(f'prior train step ({m.dtype})', f'batch {batch}, {size}', 'tokens/s',
                  batch * length, train_seconds, train_flop, f'{num_params:,} parameters')
  if not sampling:
    return [train_row]

  sample = {cached: functools.partial(sample_codes, model, params, codebook,
                                      batch_size=sample_batch, cached=cached)
            for cached in (True, False)}
  seconds = {cached: median_seconds(lambda: sample[cached](jax.random.PRNGKey(1)),
                                    steps if cached else 1) for cached in (True, False)}
  if not bool(jnp.array_equal(sample[True](jax.random.PRNGKey(1)),
                              sample[False](jax.random.PRNGKey(1)))):
    raise AssertionError('Cached and uncached sampling drew different codes.')
  embedding_params = sum(
      x.size for x in jax.tree.leaves(params['positions'])) + params['start'].size
  flop_per_token = 2 * (num_params - embedding_params) + 4 * length * m.width * m.num_layers
  tokens = sample_batch * length
  return [
      train_row,
      Row('prior sampling, key/value cache', f'{sample_batch} videos, {size}', 'tokens/s',
          tokens, seconds[True], flop_per_token * tokens, 'FLOPs counted by hand'),
      Row('prior sampling, no cache', f'{sample_batch} videos, {size}', 'tokens/s', tokens,
          seconds[False], None, f'{seconds[False] / seconds[True]:.1f}x the cached time; '
          'the same codes'),
  ]
