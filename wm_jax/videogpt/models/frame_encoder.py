"""VideoGPT's conditioning-frame encoder: a 3D ResNet with LayerNorm, trained with the prior.

Frames [B, N, H, W, C] in [-0.5, 0.5] -> [B, N * H/4 * W/4, widths[-1]] tokens that every block
of the prior cross-attends to. As in the authors' code (videogpt/resnet.py, "CIFAR stem"):
- stem: 3x3x3 conv (no bias) -> LayerNorm -> ReLU, full resolution;
- four stages of basic blocks (ResNet-18: (2, 2, 2, 2); ResNet-34: (3, 4, 6, 3)) with widths
  (64, 128, 256, 240) and strides 1, (1, 2, 2), (1, 2, 2), 1: time is never downsampled and
  space by 4;
- block: conv3 (stride) -> LN -> ReLU -> conv3 -> LN -> ReLU, plus the shortcut (a strided 1x1x1
  conv + LN in each stage's first block, identity elsewhere), then ReLU;
- LayerNorm over channels (not BatchNorm), then learned per-axis position embeddings.
The paper conditions BAIR on ResNet-34 and Moving MNIST on ResNet-18.
"""

from __future__ import annotations

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wm_jax.videogpt.models.position_embedding import AxisPositionEmbedding

STAGE_STRIDES = ((1, 1, 1), (1, 2, 2), (1, 2, 2), (1, 1, 1))


def _conv(features: int, kernel: int, dtype: Any, strides=(1, 1, 1)) -> nn.Conv:
  return nn.Conv(features, (kernel,) * 3, strides=strides, padding='SAME', use_bias=False,
                 dtype=dtype)


class BasicBlock(nn.Module):
  features: int
  strides: tuple[int, int, int] = (1, 1, 1)
  project: bool = False  # Shortcut through a strided 1x1x1 conv + LN (each stage's first block).
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    norm = lambda: nn.LayerNorm(dtype=self.dtype)
    h = nn.relu(norm()(_conv(self.features, 3, self.dtype, self.strides)(x)))
    h = nn.relu(norm()(_conv(self.features, 3, self.dtype)(h)))
    shortcut = (norm()(_conv(self.features, 1, self.dtype, self.strides)(x)) if self.project
                else x)
    return nn.relu(h + shortcut)


class FrameEncoder(nn.Module):
  """frames [B, N, H, W, C] -> context tokens [B, N * H/4 * W/4, widths[-1]]."""
  blocks_per_stage: Sequence[int] = (2, 2, 2, 2)
  widths: Sequence[int] = (64, 128, 256, 240)
  stem_width: int = 64
  dtype: Any = jnp.float32  # Compute dtype; the tokens come out in it.

  @nn.compact
  def __call__(self, frames: jax.Array) -> jax.Array:
    if frames.ndim != 5 or frames.shape[2] % 4 or frames.shape[3] % 4:
      raise ValueError('The frame encoder expects conditioning frames [B, N, H, W, C] with H and '
                       f'W divisible by 4; got shape {frames.shape}.')
    if len(self.blocks_per_stage) != 4 or len(self.widths) != 4:
      raise ValueError('The frame encoder has four stages: blocks_per_stage and widths need four '
                       f'entries, got {self.blocks_per_stage} and {self.widths}.')
    x = nn.relu(nn.LayerNorm(dtype=self.dtype)(_conv(self.stem_width, 3, self.dtype)(frames)))
    for stage, (blocks, width, strides) in enumerate(
        zip(self.blocks_per_stage, self.widths, STAGE_STRIDES)):
      for block in range(blocks):
        x = BasicBlock(width, strides if block == 0 else (1, 1, 1), project=block == 0,
                       dtype=self.dtype, name=f'stage{stage}_block{block}')(x)
    x = x + AxisPositionEmbedding(x.shape[1:4], x.shape[-1])().astype(self.dtype)
    return x.reshape(x.shape[0], -1, x.shape[-1])
