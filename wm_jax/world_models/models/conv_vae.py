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


class Encoder(nn.Module):
  """[B, 64, 64, 3] in [0, 1] -> (mu [B, z], logvar [B, z])."""
  z_size: int
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    for features in (32, 64, 128, 256):
      x = nn.relu(nn.Conv(features, (4, 4), strides=(2, 2), padding='VALID', dtype=self.dtype)(x))
    x = x.reshape(x.shape[0], -1)  # [B, 2 * 2 * 256]
    mu = nn.Dense(self.z_size, dtype=self.dtype, name='mu')(x)
    logvar = nn.Dense(self.z_size, dtype=self.dtype, name='logvar')(x)
    return mu.astype(jnp.float32), logvar.astype(jnp.float32)


class MatmulConvTranspose(nn.Module):
  """`nn.ConvTranspose(padding='VALID')` computed as one matmul plus an overlap-add.

  Same parameters ('kernel' [k, k, C_in, C_out], 'bias') and outputs as nn.ConvTranspose, but
  no multiplications by the zeros that a lhs-dilated convolution inserts: every input pixel is
  multiplied by the whole kernel ([B*H*W, C_in] @ [C_in, k*k*C_out]) and the k x k patches are
  added into the output at stride s (kernel sizes not divisible by s are padded with zero taps). XLA's CPU backend runs the dilated form's gradient ~10x
  slower; both forms are selectable (`ConvVAE.transposed_conv`) and tested equal.
  """
  features: int
  kernel_size: int
  stride: int = 2
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x):
    k, s = self.kernel_size, self.stride
    batch, height, width, channels = x.shape
    kernel = self.param('kernel', nn.initializers.lecun_normal(), (k, k, channels, self.features))
    bias = self.param('bias', nn.initializers.zeros, (self.features,))
    # nn.ConvTranspose (transpose_kernel=False) sends x[h] * kernel[k - 1 - t] to output s*h + t;
    # pad the flipped kernel to m*s taps so tap t = s*a + r lands on output block h + a, phase r.
    m = -(-k // s)
    kernel = jnp.pad(kernel[::-1, ::-1], ((0, m * s - k), (0, m * s - k), (0, 0), (0, 0)))
    # One 2D matmul [B*H*W, C_in] @ [C_in, (a, b, r, q, C_out)]: XLA's CPU backend is several
    # times slower on the equivalent 6D einsum inside the full decoder's gradient.
    kernel = kernel.reshape(m, s, m, s, channels, self.features).transpose(4, 0, 2, 1, 3, 5)
    patches = x.reshape(-1, channels).astype(self.dtype) @ kernel.reshape(channels, -1).astype(
        self.dtype)
    patches = patches.reshape(batch, height, width, m, m, s, s, self.features)
    y = 0.0
    for a in range(m):
      for b in range(m):
        block = patches[:, :, :, a, b].transpose(0, 1, 3, 2, 4, 5)  # [B, H, s, W, s, C]
        y = y + jnp.pad(block, ((0, 0), (a, m - 1 - a), (0, 0), (b, m - 1 - b), (0, 0), (0, 0)))
    y = y.reshape(batch, (height + m - 1) * s, (width + m - 1) * s, self.features)
    return y[:, :(height - 1) * s + k, :(width - 1) * s + k] + bias.astype(self.dtype)


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

  def setup(self):
    self.encoder = Encoder(self.z_size, self.dtype)
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
