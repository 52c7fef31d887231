"""The VQ-VAE's codebook with exponential-moving-average updates (VideoGPT, van den Oord 2017).

`EMACodebook` maps encoder outputs z [..., D] to their nearest of K codes. In training
(`update=True`, with mutable 'codebook' and an rng stream 'codebook'):
- the first batch initialises the codes from random encoder outputs;
- per code, the EMA count N and the EMA sum of assigned outputs m are updated with `decay`,
  and the code becomes m / N with Laplace smoothing of N (`epsilon`);
- codes whose EMA count fell below 1 ("dead") restart from random encoder outputs of the
  batch, with N = 1 and m = the new code so that the next update keeps them.
The returned quantized vectors pass gradients straight through to z; the commitment loss
mean |z - sg(e)|^2 is what the encoder is trained on (weight 0.25 in the VQ-VAE loss).

Batch statistics (counts, sums, perplexity) are sums over the whole batch. Under jit with a
sharded batch XLA all-reduces them; inside shard_map or pmap set `axis_name` and they are
psum'd over that axis, and the random picks are made identically on every device.
"""

from __future__ import annotations

from typing import NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class Quantized(NamedTuple):
  quantized: jax.Array  # [..., D], straight-through: its gradient flows to z
  codes: jax.Array  # [...] int32
  commitment_loss: jax.Array  # mean |z - sg(e)|^2
  perplexity: jax.Array  # exp(entropy of the batch's code frequencies)
  usage: jax.Array  # fraction of the K codes used in the batch


class EMACodebook(nn.Module):
  num_codes: int
  code_dim: int
  decay: float = 0.99
  epsilon: float = 1e-5
  axis_name: str | None = None

  def _psum(self, x):
    return jax.lax.psum(x, self.axis_name) if self.axis_name else x

  def _random_outputs(self, flat: jax.Array) -> jax.Array:
    """num_codes encoder outputs [K, D] picked at random (identically on every device)."""
    key = self.make_rng('codebook')
    if self.axis_name:  # Each device offers K candidates; all pick the same K of them.
      offer = flat[jax.random.randint(jax.random.fold_in(key, jax.lax.axis_index(self.axis_name)),
                                      (self.num_codes,), 0, flat.shape[0])]
      flat = jax.lax.all_gather(offer, self.axis_name, tiled=True)
    return flat[jax.random.randint(key, (self.num_codes,), 0, flat.shape[0])]

  @nn.compact
  def __call__(self, z: jax.Array, update: bool = False) -> Quantized:
    if z.shape[-1] != self.code_dim:
      raise ValueError(f'The codebook expects vectors of size code_dim={self.code_dim}, got '
                       f'inputs of shape {z.shape}.')
    k, d = self.num_codes, self.code_dim
    codes_var = self.variable('codebook', 'codes', jnp.zeros, (k, d), jnp.float32)
    count_var = self.variable('codebook', 'ema_count', jnp.zeros, (k,), jnp.float32)
    sum_var = self.variable('codebook', 'ema_sum', jnp.zeros, (k, d), jnp.float32)
    ready_var = self.variable('codebook', 'initialized', lambda: jnp.array(False))
    flat = z.reshape(-1, d).astype(jnp.float32)

    if update and not self.is_initializing():
      picks = self._random_outputs(flat)
      ready = ready_var.value
      codes_var.value = jnp.where(ready, codes_var.value, picks)
      sum_var.value = jnp.where(ready, sum_var.value, picks)
      count_var.value = jnp.where(ready, count_var.value, 1.0)
      ready_var.value = jnp.array(True)

    codes_table = codes_var.value
    distances = (jnp.sum(flat**2, axis=1, keepdims=True) - 2 * flat @ codes_table.T
                 + jnp.sum(codes_table**2, axis=1))
    indices = jnp.argmin(distances, axis=1)
    one_hot = jax.nn.one_hot(indices, k, dtype=jnp.float32)
    batch_count = self._psum(one_hot.sum(axis=0))  # [K]

    if update and not self.is_initializing():
      batch_sum = self._psum(one_hot.T @ flat)  # [K, D]
      count = self.decay * count_var.value + (1 - self.decay) * batch_count
      ema_sum = self.decay * sum_var.value + (1 - self.decay) * batch_sum
      total = count.sum()
      smoothed = (count + self.epsilon) / (total + k * self.epsilon) * total
      table = ema_sum / smoothed[:, None]
      dead = (count < 1.0)[:, None]
      restart = self._random_outputs(flat)
      codes_var.value = jnp.where(dead, restart, table)
      sum_var.value = jnp.where(dead, restart, ema_sum)
      count_var.value = jnp.where(dead[:, 0], 1.0, count)
      codes_table = codes_var.value  # As VideoGPT: the batch reads the updated codes.

    chosen = codes_table[indices].reshape(z.shape).astype(z.dtype)
    commitment = jnp.mean(jnp.square(z - jax.lax.stop_gradient(chosen)))
    probs = batch_count / jnp.maximum(batch_count.sum(), 1.0)
    perplexity = jnp.exp(-jnp.sum(probs * jnp.log(probs + 1e-10)))
    return Quantized(quantized=z + jax.lax.stop_gradient(chosen - z),
                     codes=indices.reshape(z.shape[:-1]).astype(jnp.int32),
                     commitment_loss=commitment, perplexity=perplexity,
                     usage=jnp.mean(batch_count > 0))
