"""The video VQ-VAE's 3D convolutions: strided (kernel 4, stride 1 or 2 per axis) and stride-1,
two ways.

`DownConv3D` is `nn.Conv(features, (4, 4, 4), strides, padding=same)` and `UpConv3D` is
`nn.ConvTranspose(features, (4, 4, 4), strides, padding='SAME')`, with the same parameters
('kernel' [4, 4, 4, C_in, C_out], 'bias') and outputs in both implementations:
- impl='xla': XLA's strided and transposed (lhs-dilated) convolutions, as those flax layers;
- impl='folded': no strided, dilated or 3D convolutions. The down conv folds each stride-2 axis
  into the channels (space-to-depth), which makes it a kernel-2 stride-1 convolution. The up
  conv computes each output phase (position mod 2 along every stride-2 axis) as a stride-1
  convolution with that phase's taps and interleaves the phases; for narrow outputs (at most
  4 x C_in / 64 channels: the decoder's last layer) it multiplies every input voxel by the
  whole kernel in one matmul and adds the shifted taps instead. Each stride-1 3D convolution
  then runs without a 3D convolution (`conv3d_stride1`): as a 2D one over the frames an output
  frame reads, stacked along the channels, or, where the channels narrow (the down conv after
  space-to-depth), as one matmul and an overlap-add. No multiplications by inserted zeros, and
  the gradients are 2D stride-1 convolutions and matmuls too. `frames_conv_general_dilated`
  gives the model's stride-1 `nn.Conv`s the same form.
Measured on a 2-core CPU, forward + backward at batch 16: XLA's strided down conv 1 -> 64
channels 30.4 s vs 0.39 s folded; the transposed up conv 64 -> 1 43.8 s vs 1.8 s by phases vs
0.09 s by matmul (docs/results.md); a kernel-3 64 -> 64 convolution at 83.5 GFLOP/s by frames
vs 47.7 as XLA's 3D convolution (BENCHMARKS.md). Both impls are selectable (`conv_impl`) and
tested equal. In bfloat16 the overlap-add sums its taps' products in bfloat16 (a rounding per
add, where a convolution rounds once).
"""

from __future__ import annotations

import math
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

KERNEL = 4
# Per stride: the padding of a kernel-4 "same" convolution, (front, back).
DOWN_PADDING = {1: (2, 1), 2: (1, 1)}


def _check_strides(strides: Sequence[int]) -> None:
  if len(strides) != 3 or any(s not in (1, 2) for s in strides):
    raise ValueError(f'Strided 3D convs take strides of 1 or 2 per axis, got {tuple(strides)}.')


_DIMENSIONS = ('NDHWC', 'DHWIO', 'NDHWC')


def conv3d_stride1(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """The stride-1 3D convolution of x [B, T, H, W, C] with kernel [k_t, k_h, k_w, C, F] and
  padding [(low, high)] * 3, without a 3D convolution: by overlap-add where every input's
  products with the whole kernel are no more values than the input (k_t k_h k_w F <= C: the
  down conv after space-to-depth), else by frames."""
  if math.prod(kernel.shape[:3]) * kernel.shape[4] <= kernel.shape[3]:
    return conv3d_by_overlap_add(x, kernel, padding)
  return conv3d_by_frames(x, kernel, padding)


def _products(x: jax.Array, kernel: jax.Array) -> jax.Array:
  """Every voxel of x [..., C] times the whole kernel [k_t, k_h, k_w, C, F]: [N, C] @
  [C, k_t k_h k_w F] -> [..., k_t, k_h, k_w, F]."""
  channels = x.shape[-1]
  products = x.reshape(-1, channels) @ kernel.transpose(3, 0, 1, 2, 4).reshape(channels, -1)
  return products.reshape(*x.shape[:-1], *kernel.shape[:3], kernel.shape[4])


def conv3d_by_overlap_add(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """`conv3d_stride1` as one matmul of every input voxel by the whole kernel, then each tap's
  products shifted and added."""
  x = jnp.pad(x, [(0, 0), *padding, (0, 0)])
  batch, *spatial, _ = x.shape
  taps = kernel.shape[:3]
  products = _products(x, kernel).reshape(batch, *spatial, math.prod(taps), kernel.shape[4])
  size = [n - k + 1 for n, k in zip(spatial, taps)]
  return sum(products[:, i:i + size[0], j:j + size[1], l:l + size[2], tap]
             for tap, (i, j, l) in enumerate(np.ndindex(*taps)))


def conv3d_by_frames(x: jax.Array, kernel: jax.Array, padding) -> jax.Array:
  """The stride-1 3D convolution of x [B, T, H, W, C] with kernel [k_t, k_h, k_w, C, F] and
  padding [(low, high)] * 3, as one 2D convolution over (H, W): the k_t frames each output frame
  reads are stacked along the channels ([B * T', H, W, k_t * C]). XLA's CPU backend runs 2D
  convolutions and their gradients several times faster than 3D ones."""
  (low, high), *spatial_padding = padding
  taps = kernel.shape[0]
  x = jnp.pad(x, [(0, 0), (low, high), (0, 0), (0, 0), (0, 0)])
  batch, padded, height, width, channels = x.shape
  frames = padded - taps + 1
  stacked = jnp.concatenate([x[:, j:j + frames] for j in range(taps)], axis=-1)
  kernel = kernel.transpose(1, 2, 0, 3, 4).reshape(*kernel.shape[1:3], taps * channels, -1)
  y = jax.lax.conv_general_dilated(stacked.reshape(batch * frames, height, width, -1), kernel,
                                   (1, 1), spatial_padding,
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  return y.reshape(batch, frames, *y.shape[1:])


def frames_conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=None,
                                rhs_dilation=None, dimension_numbers=None, **kwargs):
  """`lax.conv_general_dilated` for flax's `nn.Conv(conv_general_dilated=...)`: a stride-1
  undilated 3D convolution runs as `conv3d_stride1`, anything else as XLA's."""
  plain = all(s == 1 for s in window_strides) and not any(
      d is not None and any(v != 1 for v in d) for d in (lhs_dilation, rhs_dilation))
  defaults = kwargs.get('feature_group_count', 1) == 1 and kwargs.get('precision') is None
  if lhs.ndim != 5 or not plain or not defaults:
    return jax.lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation,
                                        rhs_dilation, dimension_numbers, **kwargs)
  if dimension_numbers != jax.lax.conv_dimension_numbers(lhs.shape, rhs.shape, _DIMENSIONS):
    raise ValueError(f'Expected {_DIMENSIONS} convolution layouts, got {dimension_numbers}.')
  if isinstance(padding, str):
    padding = jax.lax.padtype_to_pads(lhs.shape[1:4], rhs.shape[:3], window_strides, padding)
  return conv3d_stride1(lhs, rhs, padding)


def _parameters(module: nn.Module, in_features: int, out_features: int,
                kernel_init=nn.initializers.lecun_normal()):
  """The float32 kernel [4, 4, 4, C_in, C_out] and bias, cast to `module.dtype`."""
  if module.impl not in ('folded', 'xla'):
    raise ValueError(f"The strided conv impl must be 'folded' or 'xla', got {module.impl!r}.")
  kernel = module.param('kernel', kernel_init, (KERNEL, KERNEL, KERNEL, in_features, out_features))
  bias = module.param('bias', nn.initializers.zeros, (out_features,))
  return kernel.astype(module.dtype), bias.astype(module.dtype)


class DownConv3D(nn.Module):
  """[B, T, H, W, C_in] -> [B, T/s_t, H/s_h, W/s_w, features]; kernel 4, "same" padding."""
  features: int
  strides: Sequence[int]
  impl: str = 'folded'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _check_strides(self.strides)
    channels = x.shape[-1]
    kernel, bias = _parameters(self, channels, self.features)
    x = x.astype(self.dtype)
    padding = [DOWN_PADDING[s] for s in self.strides]
    if self.impl == 'xla':
      return jax.lax.conv_general_dilated(x, kernel, tuple(self.strides), padding,
                                          dimension_numbers=_DIMENSIONS) + bias
    x = jnp.pad(x, [(0, 0), *padding, (0, 0)])
    batch, *spatial, _ = x.shape
    s_t, s_h, s_w = self.strides
    # x[s*i + r] -> x[i, (r, c)] and kernel[s*a + r] -> kernel[a, (r, c)] on every axis.
    x = x.reshape(batch, spatial[0] // s_t, s_t, spatial[1] // s_h, s_h, spatial[2] // s_w, s_w,
                  channels).transpose(0, 1, 3, 5, 2, 4, 6, 7)
    x = x.reshape(*x.shape[:4], -1)
    kernel = kernel.reshape(KERNEL // s_t, s_t, KERNEL // s_h, s_h, KERNEL // s_w, s_w, channels,
                            self.features).transpose(0, 2, 4, 1, 3, 5, 6, 7)
    kernel = kernel.reshape(*kernel.shape[:3], -1, self.features)
    return conv3d_stride1(x, kernel, [(0, 0)] * 3) + bias


class UpConv3D(nn.Module):
  """[B, T, H, W, C_in] -> [B, s_t*T, s_h*H, s_w*W, features]; the transpose of `DownConv3D`'s
  shapes, computed as flax's ConvTranspose(padding='SAME', transpose_kernel=False)."""
  features: int
  strides: Sequence[int]
  impl: str = 'folded'
  kernel_init: Callable = nn.initializers.lecun_normal()
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    _check_strides(self.strides)
    kernel, bias = _parameters(self, x.shape[-1], self.features, self.kernel_init)
    x = x.astype(self.dtype)
    if self.impl == 'xla':
      return jax.lax.conv_transpose(x, kernel, tuple(self.strides), 'SAME',
                                    dimension_numbers=_DIMENSIONS) + bias
    if self.features * KERNEL**3 <= 4 * x.shape[-1]:
      return _up_by_matmul(x, kernel, self.strides) + bias
    return _up_by_phases(x, kernel, self.strides) + bias


# Along a stride-2 axis, output 2m + r sums x[m - 1 + r + a] * kernel[r + 2a] over a = 0, 1;
# along a stride-1 axis, output m sums x[m - 2 + j] * kernel[j] over j = 0..3. As (input offset
# i - m, tap) pairs per phase:
def _taps(stride: int) -> list[list[tuple[int, int]]]:
  if stride == 2:
    return [[(r + a - 1, r + 2 * a) for a in range(2)] for r in range(2)]
  return [[(j - 2, j) for j in range(KERNEL)]]


def _up_by_phases(x: jax.Array, kernel: jax.Array, strides: Sequence[int]) -> jax.Array:
  """One stride-1 convolution per output phase, with that phase's taps; phases interleaved."""
  outputs = []
  for phase_t in _taps(strides[0]):
    for phase_h in _taps(strides[1]):
      for phase_w in _taps(strides[2]):
        phase = (phase_t, phase_h, phase_w)
        taps = [[tap for _, tap in p] for p in phase]
        # Offsets run over consecutive integers: pad so the first reads x[m + first offset].
        padding = [(-p[0][0], p[-1][0]) for p in phase]
        outputs.append(conv3d_stride1(x, kernel[np.ix_(*taps)], padding))
  batch, t, h, w, _ = x.shape
  s_t, s_h, s_w = strides
  features = kernel.shape[-1]
  y = jnp.stack(outputs, axis=-2).reshape(batch, t, h, w, s_t, s_h, s_w, features)
  return y.transpose(0, 1, 4, 2, 5, 3, 6, 7).reshape(batch, t * s_t, h * s_h, w * s_w, features)


def _up_by_matmul(x: jax.Array, kernel: jax.Array, strides: Sequence[int]) -> jax.Array:
  """Every input voxel times the whole kernel ([N, C_in] @ [C_in, 64 C_out]), then each axis's
  taps shifted and added into its output phases. For narrow outputs (the decoder's last layer),
  where a convolution with few output channels runs far below the matmul rate."""
  # [B, t, tap_t, h, tap_h, w, tap_w, C_out]: each axis's taps beside it.
  y = _products(x, kernel).transpose(0, 1, 4, 2, 5, 3, 6, 7)
  for axis, stride in zip((1, 2, 3), strides):
    length = y.shape[axis]
    phases = []
    for phase in _taps(stride):
      total = 0
      for offset, tap in phase:  # output m reads input m + offset
        contribution = jnp.take(y, tap, axis=axis + 1)
        padding = [(0, 0)] * contribution.ndim
        padding[axis] = (max(-offset, 0), max(offset, 0))
        contribution = jnp.pad(contribution, padding)
        total = total + jax.lax.slice_in_dim(contribution, max(offset, 0),
                                             max(offset, 0) + length, axis=axis)
      phases.append(total)
    y = jnp.stack(phases, axis=axis + 1)
    y = y.reshape(*y.shape[:axis], length * stride, *y.shape[axis + 2:])
  return y
