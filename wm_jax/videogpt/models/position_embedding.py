"""VideoGPT's broadcast position embeddings: one learned table per grid axis."""

from __future__ import annotations

from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

COMBINE = ('concat', 'sum')


class AxisPositionEmbedding(nn.Module):
  """Position embeddings [*shape, features] of a grid (T', H', W'): one table per axis,
  broadcast over the grid, then concatenated along channels (`combine='concat'`, the authors'
  AddBroadcastPosEmbed: features / len(shape) channels per axis) or summed ('sum': `features`
  channels per axis, for widths the axes do not divide). Initialised N(0, 0.01^2) as theirs."""
  shape: Sequence[int]
  features: int
  combine: str = 'concat'

  @nn.compact
  def __call__(self) -> jax.Array:
    axes = len(self.shape)
    if self.combine not in COMBINE:
      raise ValueError(f'Unknown position-embedding combine {self.combine!r}; expected one of '
                       f'{COMBINE}.')
    if self.combine == 'concat' and self.features % axes:
      raise ValueError(f'Concatenated position embeddings of width {self.features} do not split '
                       f'over the {axes} axes of the grid {tuple(self.shape)}: use a multiple of '
                       f"{axes} or combine='sum' (config key model.position_embedding).")
    width = self.features // axes if self.combine == 'concat' else self.features
    parts = []
    for axis, size in enumerate(self.shape):
      table = self.param(f'axis_{axis}', nn.initializers.normal(0.01), (size, width))
      view = [1] * axes
      view[axis] = size
      parts.append(jnp.broadcast_to(table.reshape(*view, width), (*self.shape, width)))
    return jnp.concatenate(parts, axis=-1) if self.combine == 'concat' else sum(parts)
