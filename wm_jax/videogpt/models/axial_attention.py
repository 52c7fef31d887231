"""Axial attention over video features (VideoGPT's VQ-VAE attention residual blocks).

`AxialAttention` is multi-head self-attention along one axis of [B, T, H, W, C]: every position
attends to the positions that share its other two coordinates, so a (T, H, W) grid costs
T*H*W*(T + H + W) scores instead of (T*H*W)^2. `AxialBlock` adds learned per-axis position
embeddings (one table per axis, broadcast and summed, shared by the three attentions) and sums
the attentions along T, H and W (2 heads each, as in the authors' code).
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp


class AxialAttention(nn.Module):
  """x [B, T, H, W, C] -> [B, T, H, W, C], attending along `axis` (1: T, 2: H, 3: W).

  Query, key and value projections without bias and an output projection with bias, C / heads
  dimensions per head (the authors' layout, so parameter counts match theirs).
  """
  num_heads: int
  axis: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if x.ndim != 5 or self.axis not in (1, 2, 3):
      raise ValueError(f'AxialAttention expects [B, T, H, W, C] inputs and axis 1, 2 or 3; got '
                       f'shape {x.shape} and axis {self.axis}.')
    channels = x.shape[-1]
    if channels % self.num_heads:
      raise ValueError(f'{channels} channels do not split into {self.num_heads} heads.')
    lines = jnp.moveaxis(x, self.axis, -2)  # [B, a, b, length, C]
    batch_shape, length = lines.shape[:-2], lines.shape[-2]
    lines = lines.reshape(-1, length, channels)
    head = (self.num_heads, channels // self.num_heads)
    q, k, v = (nn.DenseGeneral(head, use_bias=False, dtype=self.dtype, name=name)(lines)
               for name in ('query', 'key', 'value'))
    out = jax.nn.dot_product_attention(q, k, v)  # [lines, length, heads, head_dim]
    out = nn.DenseGeneral(channels, axis=(-2, -1), dtype=self.dtype, name='out')(out)
    return jnp.moveaxis(out.reshape(*batch_shape, length, channels), -2, self.axis)


class AxialBlock(nn.Module):
  """Position embeddings + attention along T, H and W, summed: [B, T, H, W, C] -> same."""
  num_heads: int = 2
  position_embeddings: bool = True  # The paper's; the authors' VQ-VAE code has none.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _, t, h, w, c = x.shape
    if self.position_embeddings:
      init = nn.initializers.normal(0.02)
      x = (x + self.param('position_t', init, (t, 1, 1, c))
           + self.param('position_h', init, (1, h, 1, c))
           + self.param('position_w', init, (1, 1, w, c))).astype(self.dtype)
    return sum(AxialAttention(self.num_heads, axis, self.dtype, name=f'attention_{name}')(x)
               for axis, name in ((1, 't'), (2, 'h'), (3, 'w')))
