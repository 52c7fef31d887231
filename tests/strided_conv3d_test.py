import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.videogpt.models.strided_conv3d import (DownConv3D, UpConv3D, conv3d_by_frames,
                                                   conv3d_by_overlap_add)
from wm_jax.videogpt.models.video_vqvae import VideoVQVAE, conv3d

from conftest import equations

STRIDES = [(2, 2, 2), (2, 1, 1), (1, 2, 2), (1, 1, 1)]


def _random_params(module, x):
  params = module.init(jax.random.key(0), x)['params']
  return {name: jax.random.normal(jax.random.key(i), p.shape) for i, (name, p) in
          enumerate(sorted(params.items()))}


@pytest.mark.parametrize('strides', STRIDES)
@pytest.mark.parametrize('impl', ['folded', 'xla'])
def test_down_conv_equals_flax_strided_conv(strides, impl):
  x = jax.random.normal(jax.random.key(1), (2, 8, 8, 4, 3))
  params = _random_params(DownConv3D(5, strides), x)
  padding = [{1: (2, 1), 2: (1, 1)}[s] for s in strides]
  expected = nn.Conv(5, (4, 4, 4), strides, padding=padding).apply({'params': params}, x)
  got = DownConv3D(5, strides, impl).apply({'params': params}, x)
  assert got.shape == (2, 8 // strides[0], 8 // strides[1], 4 // strides[2], 5)
  np.testing.assert_allclose(got, expected, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('strides', STRIDES)
@pytest.mark.parametrize('features,impl', [(5, 'folded'), (2, 'folded'), (5, 'xla')])
def test_up_conv_equals_flax_transposed_conv(strides, features, impl):
  """Both folded paths: by phases (5 output channels) and by matmul (2 channels <= 4 x 48 / 64)."""
  x = jax.random.normal(jax.random.key(1), (2, 4, 4, 2, 48))
  params = _random_params(UpConv3D(features, strides), x)
  expected = nn.ConvTranspose(features, (4, 4, 4), strides, padding='SAME').apply(
      {'params': params}, x)
  got = UpConv3D(features, strides, impl).apply({'params': params}, x)
  assert got.shape == (2, 4 * strides[0], 4 * strides[1], 2 * strides[2], features)
  np.testing.assert_allclose(got, expected, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize('form', [conv3d_by_frames, conv3d_by_overlap_add])
@pytest.mark.parametrize('kernel_shape,channels,features', [
    ((2, 2, 2), 16, 2), ((3, 3, 3), 5, 7), ((1, 1, 1), 6, 4), ((2, 4, 3), 3, 5)])
def test_stride1_conv_forms_equal_xla_with_gradients(form, kernel_shape, channels, features):
  x = jax.random.normal(jax.random.key(1), (2, 5, 6, 4, channels))
  kernel = jax.random.normal(jax.random.key(2), (*kernel_shape, channels, features))
  padding = [(1, 2), (0, 1), (2, 0)]
  xla = lambda x, kernel: jax.lax.conv_general_dilated(
      x, kernel, (1, 1, 1), padding, dimension_numbers=('NDHWC', 'DHWIO', 'NDHWC'))
  np.testing.assert_allclose(form(x, kernel, padding), xla(x, kernel), atol=1e-4, rtol=1e-4)
  loss = lambda conv: lambda x, kernel: jnp.sum(jnp.sin(conv(x, kernel)))
  got = jax.grad(loss(lambda x, k: form(x, k, padding)), argnums=(0, 1))(x, kernel)
  expected = jax.grad(loss(xla), argnums=(0, 1))(x, kernel)
  for g, e in zip(got, expected):
    np.testing.assert_allclose(g, e, atol=1e-3, rtol=1e-4)


@pytest.mark.parametrize('kernel', [1, 3])
def test_the_models_stride1_convs_are_the_same_in_both_impls(kernel):
  x = jax.random.normal(jax.random.key(1), (2, 4, 6, 6, 8))
  params = conv3d(5, kernel, jnp.float32, 'xla').init(jax.random.key(0), x)
  np.testing.assert_allclose(conv3d(5, kernel, jnp.float32, 'folded').apply(params, x),
                             conv3d(5, kernel, jnp.float32, 'xla').apply(params, x),
                             atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize('impl', ['folded', 'xla'])
def test_the_folded_vqvae_step_runs_no_3d_convolution(impl):
  model = VideoVQVAE(hidden=16, residual_units=8, num_res_layers=1, num_codes=32, code_dim=8,
                     downsample=(2, 2, 2), conv_impl=impl)
  videos = jax.random.uniform(jax.random.key(0), (2, 4, 8, 8, 3), minval=-0.5, maxval=0.5)
  variables = model.init({'params': jax.random.key(1), 'codebook': jax.random.key(2)}, videos)

  def loss(params):
    (reconstructions, _), _ = model.apply({**variables, 'params': params}, videos, True,
                                          mutable=['batch_stats', 'codebook'],
                                          rngs={'codebook': jax.random.key(3)})
    return jnp.mean(jnp.square(reconstructions - videos))

  jaxpr = jax.make_jaxpr(jax.grad(loss))(variables['params']).jaxpr
  convs = [eqn for eqn, _ in equations(jaxpr) if eqn.primitive.name == 'conv_general_dilated']
  three_d = [eqn for eqn in convs if eqn.invars[0].aval.ndim == 5]
  assert convs and (not three_d if impl == 'folded' else three_d)


def test_gradients_match_between_impls():
  x = jax.random.normal(jax.random.key(1), (1, 4, 4, 4, 3))
  params = _random_params(DownConv3D(4, (2, 2, 2)), x)

  def loss(params, impl):
    h = DownConv3D(4, (2, 2, 2), impl).apply({'params': params}, x)
    return jnp.sum(jnp.sin(UpConv3D(4, (2, 2, 2), impl).apply({'params': up}, h)))

  up = _random_params(UpConv3D(4, (2, 2, 2)), jnp.zeros((1, 2, 2, 2, 4)))
  grads = [jax.grad(loss)(params, impl) for impl in ('folded', 'xla')]
  for name in params:
    np.testing.assert_allclose(grads[0][name], grads[1][name], atol=1e-3, rtol=1e-4)


def test_bad_settings_are_named():
  x = jnp.zeros((1, 4, 4, 4, 2))
  with pytest.raises(ValueError, match='strides of 1 or 2'):
    DownConv3D(3, (4, 1, 1)).init(jax.random.key(0), x)
  with pytest.raises(ValueError, match="'folded' or 'xla'"):
    UpConv3D(3, (2, 2, 2), 'cudnn').init(jax.random.key(0), x)
