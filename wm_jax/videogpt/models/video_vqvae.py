"""VideoGPT's video VQ-VAE (Yan et al., 2021, section 3.1) as Flax Linen modules.

Video [B, T, H, W, C] in [-0.5, 0.5] -> encoder -> 1x1x1 conv to `code_dim` -> EMA codebook ->
1x1x1 conv back to `hidden` -> decoder -> [B, T, H, W, 3].

- Encoder: log2(max downsample) strided 3D convolutions (kernel 4, stride 2 on each axis that
  still has to shrink, ReLU), a kernel-3 convolution, `num_res_layers` attention residual blocks,
  BatchNorm + ReLU. Downsample (2,2,2): 16x64x64 -> 8x32x32; (4,4,4) -> 4x16x16.
- Attention residual block: x + [BN, ReLU, conv k3 hidden->residual_units (no bias), BN, ReLU,
  conv k1 residual_units->hidden (no bias), BN, ReLU, axial attention over T, H, W] (without
  the last three when `attention=False`, the paper's Moving MNIST model).
- Decoder: residual blocks, BN + ReLU, then strided 3D transposed convolutions mirroring the
  encoder (kernel 4, ReLU between, C channels out).
Convolutions pad so that a stride-s axis of length n becomes n / s ("same" padding, the
remainder k - s split with the extra element first); the strided ones are in strided_conv3d.py.

`reference_frame` (not in the paper; None = the paper's model) makes the codes relative to one
frame r of the clip: the encoder sees frame r beside every frame (channels concatenated), the
decoder's input gets a 2D encoding of frame r added at every latent step, and the decoder's
output is added to frame r. Codes can then carry what differs from frame r, so an unchanged
background costs nothing to reconstruct. The decoder's last layer starts at zero (a new model
copies frame r), and the loss should divide by the variance of x - x_r, not of x
(`train.data_variance`; wm_jax/videogpt/configs/vqvae_cartpole.py). Meant for VideoGPT as a world
model, r = the last context frame (docs/videogpt.md, the CartPole world model).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wm_jax.videogpt.models.axial_attention import AxialBlock
from wm_jax.videogpt.models.codebook import EMACodebook, Quantized
from wm_jax.videogpt.models.strided_conv3d import (DOWN_PADDING, DownConv3D, UpConv3D,
                                                   frames_conv_general_dilated)


def conv3d(features: int, kernel: int, dtype: Any, impl: str, use_bias: bool = True) -> nn.Conv:
  """A stride-1 3D convolution that keeps T, H, W (odd kernel), computing in `dtype`; impl
  'folded' runs it as a 2D convolution over stacked frames (strided_conv3d.py), 'xla' as XLA's
  3D convolution."""
  return nn.Conv(features, (kernel,) * 3, use_bias=use_bias, padding='SAME', dtype=dtype,
                 conv_general_dilated=frames_conv_general_dilated if impl == 'folded' else None)


def stride_schedule(factors: Sequence[int]) -> list[tuple[int, ...]]:
  """Per strided layer, the (T, H, W) strides that reach `factors`: (4, 2, 2) -> [(2, 2, 2),
  (2, 1, 1)]."""
  remaining = []
  for d in factors:
    if d < 1 or 2 ** round(math.log2(d)) != d:
      raise ValueError(f'Each downsample factor must be a power of 2, got {tuple(factors)}.')
    remaining.append(round(math.log2(d)))
  return [tuple(2 if r > step else 1 for r in remaining) for step in range(max(remaining))]


def norm_relu(x: jax.Array, train: bool, dtype: Any) -> jax.Array:
  """BatchNorm (statistics in float32, output in `dtype`), then ReLU."""
  return nn.relu(nn.BatchNorm(use_running_average=not train, momentum=0.9, dtype=dtype)(x))


class AttentionResidualBlock(nn.Module):
  hidden: int
  residual_units: int
  attention: bool = True
  position_embeddings: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = 'folded'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    conv = lambda features, kernel: conv3d(features, kernel, self.dtype, self.conv_impl,
                                           use_bias=False)
    h = conv(self.residual_units, 3)(norm_relu(x, train, self.dtype))
    h = conv(self.hidden, 1)(norm_relu(h, train, self.dtype))
    if self.attention:
      h = AxialBlock(2, self.position_embeddings, self.dtype)(norm_relu(h, train, self.dtype))
    return x + h


class ResidualStack(nn.Module):
  """`num_layers` attention residual blocks, then BatchNorm and ReLU."""
  hidden: int
  residual_units: int
  num_layers: int
  attention: bool = True
  position_embeddings: bool = True
  dtype: Any = jnp.float32
  conv_impl: str = 'folded'

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for _ in range(self.num_layers):
      x = AttentionResidualBlock(self.hidden, self.residual_units, self.attention,
                                 self.position_embeddings, self.dtype, self.conv_impl)(x, train)
    return norm_relu(x, train, self.dtype)


class Encoder(nn.Module):
  hidden: int
  residual_units: int
  num_res_layers: int
  downsample: Sequence[int]
  attention: bool = True
  position_embeddings: bool = True
  conv_impl: str = 'folded'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    for strides in stride_schedule(self.downsample):
      x = nn.relu(DownConv3D(self.hidden, strides, self.conv_impl, dtype=self.dtype)(x))
    x = conv3d(self.hidden, 3, self.dtype, self.conv_impl)(x)
    return ResidualStack(self.hidden, self.residual_units, self.num_res_layers, self.attention,
                         self.position_embeddings, self.dtype, self.conv_impl)(x, train)


class Decoder(nn.Module):
  hidden: int
  residual_units: int
  num_res_layers: int
  upsample: Sequence[int]
  channels: int = 3
  attention: bool = True
  position_embeddings: bool = True
  conv_impl: str = 'folded'
  zero_output: bool = False  # Start the last layer at zero: the decoder first outputs 0.
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, train: bool) -> jax.Array:
    """-> videos in float32 whatever the compute dtype."""
    x = ResidualStack(self.hidden, self.residual_units, self.num_res_layers, self.attention,
                      self.position_embeddings, self.dtype, self.conv_impl)(x, train)
    schedule = stride_schedule(self.upsample)
    for i, strides in enumerate(schedule):
      last = i == len(schedule) - 1
      init = nn.initializers.zeros if last and self.zero_output else nn.initializers.lecun_normal()
      x = UpConv3D(self.channels if last else self.hidden, strides, self.conv_impl, init,
                   self.dtype)(x)
      x = x if last else nn.relu(x)
    return x.astype(jnp.float32)


class ReferenceEncoder(nn.Module):
  """A frame [B, H, W, C] -> [B, 1, H / d_h, W / d_w, hidden]: kernel-4 stride-2 convolutions
  (ReLU between) down to the latent grid, then a kernel-3 convolution."""
  hidden: int
  downsample: Sequence[int]  # (d_h, d_w)
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, frame: jax.Array) -> jax.Array:
    x = frame
    for strides in stride_schedule(self.downsample):
      padding = [DOWN_PADDING[s] for s in strides]
      x = nn.relu(nn.Conv(self.hidden, (4, 4), strides, padding=padding, dtype=self.dtype)(x))
    return nn.Conv(self.hidden, (3, 3), padding='SAME', dtype=self.dtype)(x)[:, None]


class VideoVQVAE(nn.Module):
  """videos [B, T, H, W, C] in [-0.5, 0.5] -> (reconstructions, `Quantized`)."""
  hidden: int = 240
  residual_units: int = 128
  num_res_layers: int = 4
  num_codes: int = 1024
  code_dim: int = 256
  downsample: Sequence[int] = (2, 2, 2)
  channels: int = 3  # C of the videos (Moving MNIST: 1).
  attention: bool = True  # Axial attention in the residual blocks (paper: none for Moving MNIST).
  position_embeddings: bool = True  # The paper's; the authors' code has none in the VQ-VAE.
  conv_impl: str = 'folded'  # How the 3D convs compute (same math): see strided_conv3d.py.
  axis_name: str | None = None  # Set inside shard_map/pmap: codebook statistics are psum'd.
  reference_frame: int | None = None  # Codes relative to this frame of the clip (see above).
  # Compute dtype ('bfloat16': mixed precision). Parameters, BatchNorm and codebook statistics,
  # the code search (pre_quantize included) and the losses stay float32; the reconstructions
  # are cast to float32.
  dtype: Any = jnp.float32

  def setup(self):
    self.encoder = Encoder(self.hidden, self.residual_units, self.num_res_layers, self.downsample,
                           self.attention, self.position_embeddings, self.conv_impl, self.dtype)
    # The codebook compares float32 vectors.
    self.pre_quantize = conv3d(self.code_dim, 1, jnp.float32, self.conv_impl)
    self.codebook = EMACodebook(self.num_codes, self.code_dim, axis_name=self.axis_name)
    self.post_quantize = conv3d(self.hidden, 1, self.dtype, self.conv_impl)
    self.decoder = Decoder(self.hidden, self.residual_units, self.num_res_layers, self.downsample,
                           self.channels, self.attention, self.position_embeddings,
                           self.conv_impl, zero_output=self.reference_frame is not None,
                           dtype=self.dtype)
    if self.reference_frame is not None:
      self.reference_encoder = ReferenceEncoder(self.hidden, tuple(self.downsample[1:]),
                                                self.dtype)

  def encode(self, videos: jax.Array, train: bool = False) -> Quantized:
    check_videos(videos, self.downsample, self.channels, self.reference_frame)
    if self.reference_frame is not None:
      reference = jnp.broadcast_to(videos[:, self.reference_frame:self.reference_frame + 1],
                                   videos.shape)
      videos = jnp.concatenate([videos, reference], axis=-1)
    return self.codebook(self.pre_quantize(self.encoder(videos, train)), update=train)

  def decode(self, vectors: jax.Array, reference: jax.Array | None, train: bool) -> jax.Array:
    """Code vectors [B, T', H', W', code_dim] (and, with `reference_frame`, that frame
    [B, H, W, C]) -> videos [B, T, H, W, C]."""
    x = self.post_quantize(vectors)
    if self.reference_frame is None:
      return self.decoder(x, train)
    if reference is None or reference.shape[1:] != (
        *(self.downsample[i] * vectors.shape[i + 1] for i in (1, 2)), self.channels):
      raise ValueError(f'A VQ-VAE with reference_frame={self.reference_frame} decodes relative '
                       f'to that frame: pass it as [B, H, W, {self.channels}], got '
                       f'{None if reference is None else reference.shape}.')
    x = x + self.reference_encoder(reference)
    return reference[:, None] + self.decoder(x, train)

  def decode_codes(self, codes: jax.Array, reference: jax.Array | None = None) -> jax.Array:
    """codes [B, T', H', W'] int (and the reference frame [B, H, W, C] when `reference_frame`
    is set) -> videos [B, T, H, W, C] (inference: running BN statistics)."""
    vectors = self.codebook.variables['codebook']['codes'][codes]
    return self.decode(vectors, reference, False)

  def __call__(self, videos: jax.Array, train: bool = False):
    quantized = self.encode(videos, train)
    reference = None if self.reference_frame is None else videos[:, self.reference_frame]
    return self.decode(quantized.quantized, reference, train), quantized


def check_videos(videos: jax.Array, downsample: Sequence[int], channels: int = 3,
                 reference_frame: int | None = None) -> None:
  if videos.ndim != 5 or videos.shape[-1] != channels:
    raise ValueError(f'Expected videos [B, T, H, W, {channels}], got shape {videos.shape}.')
  if reference_frame is not None and not 0 <= reference_frame < videos.shape[1]:
    raise ValueError(f'reference_frame={reference_frame} must lie in [0, {videos.shape[1]}) '
                     f'(the clip has T={videos.shape[1]} frames).')
  for size, factor, name in zip(videos.shape[1:4], downsample, 'THW'):
    if size % factor:
      raise ValueError(f'{name}={size} is not divisible by its downsample factor {factor} '
                       f'(downsample {tuple(downsample)}).')


def vqvae_loss(videos: jax.Array, reconstructions: jax.Array, quantized: Quantized,
               data_variance: float = 0.06, commitment_weight: float = 0.25):
  """Reconstruction MSE / data variance + commitment_weight x commitment loss."""
  reconstruction = jnp.mean(jnp.square(reconstructions - videos)) / data_variance
  return reconstruction + commitment_weight * quantized.commitment_loss, reconstruction
