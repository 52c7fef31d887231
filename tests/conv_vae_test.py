import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.world_models.models.conv_vae import (ConvVAE, MatmulConv, MatmulConvTranspose,
                                                 gaussian_kl, sample_latent, vae_loss)


def count_params(params):
  return sum(x.size for x in jax.tree.leaves(params))


@pytest.mark.parametrize('z_size, expected', [(32, 4_348_547), (64, 4_446_915)])
def test_parameter_count_matches_paper(z_size, expected):
  frames = jnp.zeros((1, 64, 64, 3), jnp.uint8)
  params = jax.eval_shape(ConvVAE(z_size).init, jax.random.key(0), frames, jax.random.key(0))
  assert count_params(params) == expected


def test_shapes_and_range():
  model = ConvVAE(32)
  frames = jax.random.randint(jax.random.key(0), (2, 64, 64, 3), 0, 256).astype(jnp.uint8)
  params = model.init(jax.random.key(1), frames, jax.random.key(2))
  reconstruction, mu, logvar = model.apply(params, frames, jax.random.key(3))
  assert reconstruction.shape == (2, 64, 64, 3) and mu.shape == logvar.shape == (2, 32)
  assert 0.0 <= float(reconstruction.min()) and float(reconstruction.max()) <= 1.0
  jitted = jax.jit(model.apply)(params, frames, jax.random.key(3))
  np.testing.assert_allclose(jitted[0], reconstruction, atol=1e-5)


@pytest.mark.parametrize('form', ['gathered', 'overlap_add'])
@pytest.mark.parametrize('in_size, in_channels, features, kernel', [
    (1, 16, 8, 5), (5, 8, 4, 5), (13, 4, 3, 6), (3, 2, 2, 3)])
def test_matmul_conv_transpose_equals_flax(in_size, in_channels, features, kernel, form):
  assert_same_as_flax(MatmulConvTranspose(features, kernel, form=form),
                      nn.ConvTranspose(features, (kernel, kernel), strides=(2, 2), padding='VALID'),
                      in_size, in_channels)


def assert_same_as_flax(ours: nn.Module, reference: nn.Module, in_size: int, in_channels: int):
  """`ours` has the parameter tree of the flax layer `reference` and, on random parameters, its
  outputs and gradients (parameters and input)."""
  x = jax.random.normal(jax.random.key(0), (2, in_size, in_size, in_channels))
  params = reference.init(jax.random.key(1), x)
  params = jax.tree.map(lambda p: jax.random.normal(jax.random.key(2), p.shape), params)
  assert jax.tree.map(jnp.shape, ours.init(jax.random.key(1), x)) == jax.tree.map(jnp.shape, params)
  np.testing.assert_allclose(ours.apply(params, x), reference.apply(params, x), atol=1e-4)

  def grads(module):
    return jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))), argnums=(0, 1))(params, x)
  for a, b in zip(jax.tree.leaves(grads(ours)), jax.tree.leaves(grads(reference))):
    np.testing.assert_allclose(a, b, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize('form', ['gathered', 'overlap_add'])
@pytest.mark.parametrize('in_size, in_channels, features', [(64, 3, 32), (6, 8, 4), (7, 2, 3)])
def test_matmul_conv_equals_flax(in_size, in_channels, features, form):
  assert_same_as_flax(MatmulConv(features, 4, 2, form=form),
                      nn.Conv(features, (4, 4), strides=(2, 2), padding='VALID'), in_size,
                      in_channels)


def test_both_conv_forms_agree_on_the_same_params():
  frames = jax.random.randint(jax.random.key(0), (2, 64, 64, 3), 0, 256).astype(jnp.uint8)
  params = ConvVAE(32).init(jax.random.key(1), frames, jax.random.key(2))
  a = ConvVAE(32).apply(params, frames, jax.random.key(3))
  b = ConvVAE(32, transposed_conv='xla', strided_conv='xla').apply(params, frames,
                                                                   jax.random.key(3))
  for x, y in zip(a, b):
    np.testing.assert_allclose(x, y, atol=1e-5)


def test_closed_form_kl_matches_monte_carlo():
  mu = jnp.array([0.5, -1.0, 2.0])
  logvar = jnp.array([0.3, -0.7, 0.1])
  z = sample_latent(jax.random.key(0), jnp.broadcast_to(mu, (400_000, 3)),
                    jnp.broadcast_to(logvar, (400_000, 3)))
  log_q = jnp.sum(-0.5 * (jnp.log(2 * jnp.pi) + logvar + (z - mu) ** 2 / jnp.exp(logvar)), -1)
  log_p = jnp.sum(-0.5 * (jnp.log(2 * jnp.pi) + z ** 2), -1)
  monte_carlo = float(jnp.mean(log_q - log_p))
  assert abs(monte_carlo - float(gaussian_kl(mu, logvar))) < 0.02
  assert float(gaussian_kl(jnp.zeros(4), jnp.zeros(4))) == 0.0


def test_free_bits_floor():
  frames = jnp.full((2, 64, 64, 3), 0.5)
  reconstruction = jnp.full((2, 64, 64, 3), 0.25)
  squared_error = 64 * 64 * 3 * 0.25 ** 2
  mu = jnp.full((2, 32), 0.1)  # KL = 0.16 per image, far below the floor of 0.5 * 32 = 16.
  logvar = jnp.zeros((2, 32))
  loss, metrics = vae_loss(frames, reconstruction, mu, logvar, kl_tolerance=0.5)
  np.testing.assert_allclose(loss, squared_error + 16.0, rtol=1e-6)
  np.testing.assert_allclose(metrics['kl'], 0.16, rtol=1e-4)
  # Below the floor the KL term sends no gradient to mu; above it, it does.
  grad_mu = jax.grad(lambda m: vae_loss(frames, reconstruction, m, logvar)[0])(mu)
  assert float(jnp.abs(grad_mu).max()) == 0.0
  big_mu = jnp.full((2, 32), 2.0)  # KL = 64 per image.
  grad_mu = jax.grad(lambda m: vae_loss(frames, reconstruction, m, logvar)[0])(big_mu)
  np.testing.assert_allclose(grad_mu, big_mu / 2, rtol=1e-6)  # d/dmu mean(mu^2 / 2) over B=2.


@pytest.mark.parametrize('shape, dtype, message', [
    ((2, 96, 96, 3), jnp.uint8, 'shape'),
    ((2, 3, 64, 64), jnp.uint8, 'channels last'),
    ((64, 64, 3), jnp.uint8, 'shape'),
    ((2, 64, 64, 3), jnp.int32, 'dtype'),
])
def test_bad_frames_get_clear_errors(shape, dtype, message):
  model = ConvVAE(32)
  params = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.uint8),
                          jax.random.key(0))
  with pytest.raises(ValueError, match=message):
    jax.jit(model.apply)(params, jnp.zeros(shape, dtype), jax.random.key(0))
