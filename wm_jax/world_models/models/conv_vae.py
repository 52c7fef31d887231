"""V: the convolutional VAE of World Models (Ha & Schmidhuber, 2018, appendix A.1).

Encoder: 64x64x3 -> 4 convs (k4, s2, VALID, ReLU; 32, 64, 128, 256 channels)
-> 2x2x256 = 1024 features -> dense heads for mu and log-variance of z.
Decoder: z -> dense 1024 -> 1x1x1024 -> 4 transposed convs (s2, VALID):
128 (k5, ReLU), 64 (k5, ReLU), 32 (k6, ReLU), 3 (k6, sigmoid); spatial 1 -> 5 -> 13 -> 30 -> 64.
Parameter count: 4,348,547 at z=32 and 4,446,915 at z=64 (asserted in tests/conv_vae_test.py).

The objective is the ELBO. For any q(z|x),

    log p(x) = KL(q(z|x) || p(z|x)) + ELBO(x),
    ELBO(x)  = E_q[log p(x|z)] - KL(q(z|x) || p(z)),

and since the first KL is >= 0, the ELBO is a lower bound on log p(x); raising it both fits the
data and pulls q towards the true posterior. With a Gaussian decoder of fixed variance,
-E_q[log p(x|z)] is the summed squared error up to constants, and with q = N(mu, diag(sigma^2)),
p(z) = N(0, I) the KL term has the closed form  -1/2 sum(1 + log sigma^2 - mu^2 - sigma^2).
The paper minimises  sum (x - x_hat)^2 + max(KL, kl_tolerance * z_size): the negative ELBO with
a "free bits" floor, below which the KL is not pushed further (kl_tolerance = 0.5).
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

FRAME_SHAPE = (64, 64, 3)


def check_frame_batch(x: jax.Array | np.ndarray) -> None:
  """Raises a ValueError unless `x` is a [B, 64, 64, 3] batch of uint8 or float frames.

  Shapes and dtypes are static, so this also runs inside jit (at trace time). Value ranges need
  the data and are checked on the host by `wm_jax.world_models.frames.check_frames`.
  """
  if x.ndim != 4 or tuple(x.shape[1:]) != FRAME_SHAPE:
    raise ValueError(
        f'ConvVAE expects frames of shape [batch, 64, 64, 3] (channels last), got {tuple(x.shape)}.'
        ' Resize frames to 64x64 RGB before encoding (see wm_jax.envs.pixels).')
  if not (x.dtype == jnp.uint8 or jnp.issubdtype(x.dtype, jnp.floating)):
    raise ValueError(
        f'ConvVAE expects uint8 frames in [0, 255] or float frames in [0, 1], got dtype {x.dtype}.')


def to_unit_float(x: jax.Array, dtype=jnp.float32) -> jax.Array:
  """uint8 [0, 255] -> float [0, 1]; float input is taken to be in [0, 1] already."""
  if x.dtype == jnp.uint8:
    return x.astype(dtype) / 255.0
  return x.astype(dtype)


def matmul_conv_form(height: int, width: int, channels: int, features: int, kernel_size: int,
                     stride: int = 2, transposed: bool = False) -> str:
  """The form `MatmulConv` (or, `transposed`, `MatmulConvTranspose`) with form='auto' takes on
  an input [B, height, width, channels]: 'gathered' or 'overlap_add', whichever moves fewer
  values (the m x m shifted copies of the input side, or of the products)."""
  m = -(-kernel_size // stride)
  if transposed:  # Inputs padded to the output's H + m - 1 blocks; products of every input.
    gathered, products = (height + m - 1) * (width + m - 1) * channels, (
        height * width * stride * stride * features)
  else:  # Space-to-depth blocks of H' + m - 1; outputs of H'.
    out_h, out_w = (height - kernel_size) // stride + 1, (width - kernel_size) // stride + 1
    gathered, products = out_h * out_w * stride * stride * channels, (
        (out_h + m - 1) * (out_w + m - 1) * features)
  return 'gathered' if gathered < products else 'overlap_add'


class _MatmulConvBase(nn.Module):
  """What MatmulConv and MatmulConvTranspose share: their fields, flax's parameters and the form."""
  features: int
  kernel_size: int
  stride: int = 2
  dtype: jnp.dtype = jnp.float32
  form: str = 'auto'  # 'gathered', 'overlap_add', or 'auto': the one that moves fewer values.
  transposed = False

  def kernel_and_bias(self, channels: int) -> tuple[jax.Array, jax.Array]:
    """flax's 'kernel' [k, k, C_in, C_out] and 'bias' [C_out] (call from the compact method)."""
    k = self.kernel_size
    return (self.param('kernel', nn.initializers.lecun_normal(), (k, k, channels, self.features)),
            self.param('bias', nn.initializers.zeros, (self.features,)))

  def pick_form(self, x: jax.Array) -> str:
    if self.form == 'auto':
      return matmul_conv_form(*x.shape[1:], self.features, self.kernel_size, self.stride,
                              self.transposed)
    if self.form not in ('gathered', 'overlap_add'):
      raise ValueError(f"form must be 'auto', 'gathered' or 'overlap_add', got {self.form!r}.")
    return self.form


class MatmulConv(_MatmulConvBase):
  """`nn.Conv(features, (k, k), strides=(s, s), padding='VALID')` (k a multiple of s) as one
  matmul. Same parameters ('kernel' [k, k, C_in, C_out], 'bias') and outputs as nn.Conv; XLA's
  CPU backend runs the strided conv's gradient several times slower (the first layer's 3
  channels and the last's 6x6 inputs most). Space-to-depth by s makes it a stride-1 conv of
  m x m taps (m = k/s) over blocks of s*s*C_in values; then, whichever moves fewer values:
  - gathered taps: the m x m shifted blocks side by side, [B*H'*W', m*m*s*s*C_in] @
    [m*m*s*s*C_in, C_out];
  - overlap-add: every block times every tap, [B*(H'+m-1)*(W'+m-1), s*s*C_in] @
    [s*s*C_in, m*m*C_out], the m x m shifted results added.
  """

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.stride
    batch, height, width, channels = x.shape
    kernel, bias = self.kernel_and_bias(channels)
    if k % s:
      raise ValueError(f'MatmulConv needs kernel_size ({k}) to be a multiple of stride ({s}).')
    m = k // s
    form = self.pick_form(x)
    out_h, out_w = (height - k) // s + 1, (width - k) // s + 1
    x = x[:, :(out_h + m - 1) * s, :(out_w + m - 1) * s].astype(self.dtype)
    blocks = x.reshape(batch, out_h + m - 1, s, out_w + m - 1, s, channels).transpose(
        0, 1, 3, 2, 4, 5).reshape(batch, out_h + m - 1, out_w + m - 1, s * s * channels)
    # Kernel tap (s*a + r, s*b + q) meets the block shifted by (a, b), at its phase (r, q).
    kernel = kernel.reshape(m, s, m, s, channels, self.features).astype(self.dtype)
    if form == 'gathered':
      columns = jnp.concatenate([blocks[:, a:a + out_h, b:b + out_w]
                                 for a in range(m) for b in range(m)], axis=-1)
      kernel = kernel.transpose(0, 2, 1, 3, 4, 5).reshape(-1, self.features)
      y = columns.reshape(-1, m * m * s * s * channels) @ kernel
      y = y.reshape(batch, out_h, out_w, self.features)
    else:
      kernel = kernel.transpose(1, 3, 4, 0, 2, 5).reshape(s * s * channels, -1)
      taps = (blocks.reshape(-1, s * s * channels) @ kernel).reshape(
          batch, out_h + m - 1, out_w + m - 1, m, m, self.features)
      y = sum(taps[:, a:a + out_h, b:b + out_w, a, b] for a in range(m) for b in range(m))
    return y + bias.astype(self.dtype)


class Encoder(nn.Module):
  """[B, 64, 64, 3] in [0, 1] -> (mu [B, z], logvar [B, z])."""
  z_size: int
  dtype: jnp.dtype = jnp.float32
  strided_conv: str = 'matmul'  # 'matmul' (MatmulConv) or 'xla' (nn.Conv)

  @nn.compact
  def __call__(self, x):
    for i, features in enumerate((32, 64, 128, 256)):
      if self.strided_conv == 'matmul':
        conv = MatmulConv(features, 4, 2, dtype=self.dtype, name=f'Conv_{i}')
      elif self.strided_conv == 'xla':
        conv = nn.Conv(features, (4, 4), strides=(2, 2), padding='VALID', dtype=self.dtype,
                       name=f'Conv_{i}')
      else:
        raise ValueError(f"vae.model.strided_conv must be 'matmul' or 'xla', got "
                         f'{self.strided_conv!r}.')
      x = nn.relu(conv(x))
    x = x.reshape(x.shape[0], -1)  # [B, 2 * 2 * 256]
    mu = nn.Dense(self.z_size, dtype=self.dtype, name='mu')(x)
    logvar = nn.Dense(self.z_size, dtype=self.dtype, name='logvar')(x)
    return mu.astype(jnp.float32), logvar.astype(jnp.float32)


class MatmulConvTranspose(_MatmulConvBase):
  """`nn.ConvTranspose(padding='VALID')` computed as one matmul.

  Same parameters ('kernel' [k, k, C_in, C_out], 'bias') and outputs as nn.ConvTranspose, but
  no multiplications by the zeros that a lhs-dilated convolution inserts (XLA's CPU backend runs
  that form's gradient ~10x slower; both forms are selectable, `ConvVAE.transposed_conv`, and
  tested equal). Output pixel s*i + r (phase r) sums x[i - a] * tap s*a + r over a < m = ceil(k/s)
  (kernels padded with zero taps to m*s). Two equal ways, whichever moves fewer values:
  - overlap-add: every input pixel times the whole kernel ([B*H*W, C_in] @ [C_in, m*m*s*s*C_out]),
    the m x m patches added into the output at stride s;
  - gathered taps: the m x m shifted copies of the zero-padded input side by side
    ([B*H'*W', m*m*C_in] @ [m*m*C_in, s*s*C_out]), the s x s phases then put in place.
  """
  transposed = True

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.stride
    batch, height, width, channels = x.shape
    kernel, bias = self.kernel_and_bias(channels)
    # nn.ConvTranspose (transpose_kernel=False) sends x[h] * kernel[k - 1 - t] to output s*h + t;
    # pad the flipped kernel to m*s taps so tap t = s*a + r lands on output block h + a, phase r.
    m = -(-k // s)
    kernel = jnp.pad(kernel[::-1, ::-1], ((0, m * s - k), (0, m * s - k), (0, 0), (0, 0)))
    kernel = kernel.reshape(m, s, m, s, channels, self.features).astype(self.dtype)
    x = x.astype(self.dtype)
    out_h, out_w = height + m - 1, width + m - 1  # In blocks of s x s output pixels.
    if self.pick_form(x) == 'gathered':
      y = self._gathered_taps(x, kernel, m)
    else:
      y = self._overlap_add(x, kernel, m)
    y = y.reshape(batch, out_h * s, out_w * s, self.features)
    return y[:, :(height - 1) * s + k, :(width - 1) * s + k] + bias.astype(self.dtype)

  def _overlap_add(self, x, kernel, m):
    batch, height, width, channels = x.shape
    s = self.stride
    # One 2D matmul [B*H*W, C_in] @ [C_in, (a, b, r, q, C_out)]: XLA's CPU backend is several
    # times slower on the equivalent 6D einsum inside the full decoder's gradient.
    kernel = kernel.transpose(4, 0, 2, 1, 3, 5).reshape(channels, -1)
    patches = (x.reshape(-1, channels) @ kernel).reshape(batch, height, width, m, m, s, s,
                                                          self.features)
    # Added up block by block with the s x s phases innermost, put in place once at the end.
    y = 0.0
    for a in range(m):
      for b in range(m):
        y = y + jnp.pad(patches[:, :, :, a, b],
                        ((0, 0), (a, m - 1 - a), (b, m - 1 - b), (0, 0), (0, 0), (0, 0)))
    return y.transpose(0, 1, 3, 2, 4, 5)  # [B, H', s, W', s, C]

  def _gathered_taps(self, x, kernel, m):
    batch, height, width, channels = x.shape
    s = self.stride
    padded = jnp.pad(x, ((0, 0), (m - 1, m - 1), (m - 1, m - 1), (0, 0)))
    # Block i takes x[i - a] for tap a: the padded input shifted by m - 1 - a.
    columns = jnp.concatenate(
        [padded[:, m - 1 - a:m - 1 - a + height + m - 1, m - 1 - b:m - 1 - b + width + m - 1]
         for a in range(m) for b in range(m)], axis=-1)
    kernel = kernel.transpose(0, 2, 4, 1, 3, 5).reshape(m * m * channels, s * s * self.features)
    y = (columns.reshape(-1, m * m * channels) @ kernel).reshape(
        batch, height + m - 1, width + m - 1, s, s, self.features)
    return y.transpose(0, 1, 3, 2, 4, 5)  # [B, H', s, W', s, C]


class Decoder(nn.Module):
  """[B, z] -> [B, 64, 64, 3] in (0, 1)."""
  dtype: jnp.dtype = jnp.float32
  transposed_conv: str = 'matmul'  # 'matmul' (MatmulConvTranspose) or 'xla' (nn.ConvTranspose)

  def deconv(self, features, kernel, name):
    if self.transposed_conv == 'matmul':
      return MatmulConvTranspose(features, kernel, dtype=self.dtype, name=name)
    if self.transposed_conv == 'xla':
      return nn.ConvTranspose(features, (kernel, kernel), strides=(2, 2), padding='VALID',
                              dtype=self.dtype, name=name)
    raise ValueError(f"vae.transposed_conv must be 'matmul' or 'xla', got {self.transposed_conv!r}.")

  @nn.compact
  def __call__(self, z):
    x = nn.Dense(1024, dtype=self.dtype)(z).reshape(z.shape[0], 1, 1, 1024)
    for i, (features, kernel) in enumerate(((128, 5), (64, 5), (32, 6))):
      x = nn.relu(self.deconv(features, kernel, f'deconv{i + 1}')(x))
    x = self.deconv(3, 6, 'deconv4')(x)
    return nn.sigmoid(x.astype(jnp.float32))


class ConvVAE(nn.Module):
  """The World Models V. `__call__(frames, key) -> (reconstruction, mu, logvar)`.

  frames: [B, 64, 64, 3], uint8 in [0, 255] or float in [0, 1].
  """
  z_size: int = 32
  dtype: jnp.dtype = jnp.float32
  transposed_conv: str = 'matmul'  # How the decoder computes its transposed convs (same math).
  strided_conv: str = 'matmul'  # How the encoder computes its strided convs (same math).

  def setup(self):
    self.encoder = Encoder(self.z_size, self.dtype, self.strided_conv)
    self.decoder = Decoder(self.dtype, self.transposed_conv)

  def encode(self, frames):
    check_frame_batch(frames)
    return self.encoder(to_unit_float(frames, self.dtype))

  def decode(self, z):
    return self.decoder(z)

  def __call__(self, frames, key):
    mu, logvar = self.encode(frames)
    z = sample_latent(key, mu, logvar)
    return self.decode(z), mu, logvar


def sample_latent(key: jax.Array, mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """The reparameterisation z = mu + sigma * eps, eps ~ N(0, I)."""
  return mu + jnp.exp(0.5 * logvar) * jax.random.normal(key, mu.shape, mu.dtype)


def gaussian_kl(mu: jax.Array, logvar: jax.Array) -> jax.Array:
  """KL(N(mu, diag(exp(logvar))) || N(0, I)) summed over the last axis: [..., z] -> [...]."""
  return -0.5 * jnp.sum(1.0 + logvar - jnp.square(mu) - jnp.exp(logvar), axis=-1)


def vae_loss(frames: jax.Array, reconstruction: jax.Array, mu: jax.Array, logvar: jax.Array,
             kl_tolerance: float = 0.5) -> tuple[jax.Array, dict[str, jax.Array]]:
  """The paper's loss, averaged over the batch: summed squared error + max(KL, tol * z_size).

  frames: [B, 64, 64, 3] (uint8 or float in [0, 1]); reconstruction: [B, 64, 64, 3] in [0, 1];
  mu, logvar: [B, z]. The floor applies to each image's KL before the batch mean, as in the
  authors' code; metrics report the unfloored KL.
  """
  target = to_unit_float(frames)
  reconstruction_loss = jnp.mean(jnp.sum(jnp.square(target - reconstruction), axis=(1, 2, 3)))
  kl = gaussian_kl(mu, logvar)
  floored_kl = jnp.mean(jnp.maximum(kl, kl_tolerance * mu.shape[-1]))
  loss = reconstruction_loss + floored_kl
  return loss, {'loss': loss, 'reconstruction_loss': reconstruction_loss, 'kl': jnp.mean(kl)}
