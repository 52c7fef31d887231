import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.videogpt.models.codebook import EMACodebook

K, D = 4, 3


def init(codebook, z):
  variables = codebook.init(jax.random.key(0), z)
  return variables['codebook']


def apply(codebook, state, z, key=1):
  out, updated = codebook.apply({'codebook': state}, z, update=True,
                                rngs={'codebook': jax.random.key(key)}, mutable=['codebook'])
  return out, updated['codebook']


def test_first_batch_initialises_codes_from_encoder_outputs():
  codebook = EMACodebook(K, D, decay=1.0)  # No EMA movement: the codes stay the initial picks.
  z = jax.random.normal(jax.random.key(2), (2, 5, D))
  state = init(codebook, z)
  assert not state['initialized']
  _, state = apply(codebook, state, z)
  assert state['initialized']
  flat = np.asarray(z).reshape(-1, D)
  for code in np.asarray(state['codes']):
    assert np.min(np.abs(flat - code).sum(axis=1)) < 1e-5
  np.testing.assert_array_equal(state['ema_count'], 1.0)
  _, again = apply(codebook, state, z * 10.0, key=9)  # Later batches do not re-initialise.
  np.testing.assert_allclose(again['codes'], state['codes'], rtol=1e-5)


def test_ema_update_equals_a_hand_computation():
  codebook = EMACodebook(K, D, decay=0.9, epsilon=1e-5)
  codes = np.array([[0.0, 0, 0], [1, 1, 1], [-1, -1, -1], [5, 5, 5]], np.float32)
  state = {'codes': jnp.asarray(codes), 'ema_count': jnp.array([2.0, 3.0, 1.5, 4.0]),
           'ema_sum': jnp.asarray(codes * np.array([[2.0], [3.0], [1.5], [4.0]])),
           'initialized': jnp.array(True)}
  z = np.array([[0.1, 0, 0], [0.9, 1, 1.2], [1.1, 1, 0.8], [-1, -0.9, -1], [4, 5, 6],
                [0, 0.2, 0]], np.float32)
  out, new = apply(codebook, state, jnp.asarray(z))

  assign = np.array([0, 1, 1, 2, 3, 0])
  np.testing.assert_array_equal(out.codes, assign)
  one_hot = np.eye(K)[assign]
  count = 0.9 * np.array([2.0, 3.0, 1.5, 4.0]) + 0.1 * one_hot.sum(0)
  ema_sum = 0.9 * np.asarray(state['ema_sum']) + 0.1 * one_hot.T @ z
  total = count.sum()
  smoothed = (count + 1e-5) / (total + K * 1e-5) * total
  np.testing.assert_allclose(new['ema_count'], count, rtol=1e-6)
  np.testing.assert_allclose(new['ema_sum'], ema_sum, rtol=1e-6)
  np.testing.assert_allclose(new['codes'], ema_sum / smoothed[:, None], rtol=1e-5)
  np.testing.assert_allclose(out.quantized, np.asarray(new['codes'])[assign], rtol=1e-5)
  quantized = np.asarray(new['codes'])[assign]
  np.testing.assert_allclose(out.commitment_loss, np.mean((z - quantized) ** 2), rtol=1e-5)
  probs = one_hot.mean(0)
  np.testing.assert_allclose(out.perplexity, np.exp(-np.sum(probs * np.log(probs))), rtol=1e-5)
  assert float(out.usage) == 1.0


def test_dead_codes_restart_from_encoder_outputs():
  codebook = EMACodebook(K, D, decay=0.5)
  codes = np.array([[0.0, 0, 0], [1, 1, 1], [50, 50, 50], [-50, -50, -50]], np.float32)
  state = {'codes': jnp.asarray(codes), 'ema_count': jnp.array([4.0, 4.0, 1.5, 4.0]),
           'ema_sum': jnp.asarray(codes * np.array([[4.0], [4.0], [1.5], [4.0]])),
           'initialized': jnp.array(True)}
  z = jax.random.uniform(jax.random.key(3), (8, D))  # All near codes 0 and 1.
  _, new = apply(codebook, state, z)
  # Code 2's count decays to 0.75 < 1: restarted at one of the batch's vectors, with N = 1.
  # Code 3's count decays to 2.0: kept (still far away).
  restarted = np.asarray(new['codes'][2])
  assert np.min(np.abs(np.asarray(z) - restarted).sum(axis=1)) < 1e-6
  assert float(new['ema_count'][2]) == 1.0
  np.testing.assert_allclose(new['ema_sum'][2], restarted)
  np.testing.assert_allclose(new['ema_count'][3], 2.0)
  np.testing.assert_allclose(new['codes'][3], codes[3], rtol=1e-4)


def test_straight_through_gradient_and_commitment_gradient():
  codebook = EMACodebook(K, D)
  z = jax.random.normal(jax.random.key(4), (6, D))
  state = apply(codebook, init(codebook, z), z)[1]
  weights = jax.random.normal(jax.random.key(5), (6, D))

  def through(z):
    return jnp.sum(codebook.apply({'codebook': state}, z).quantized * weights)

  np.testing.assert_allclose(jax.grad(through)(z), weights, rtol=1e-6)

  def commitment(z):
    return codebook.apply({'codebook': state}, z).commitment_loss
  quantized = codebook.apply({'codebook': state}, z).quantized
  np.testing.assert_allclose(jax.grad(commitment)(z), 2 * (z - quantized) / z.size, rtol=1e-5,
                             atol=1e-7)


def test_split_batch_with_axis_name_equals_the_whole_batch():
  """Two 'devices' (vmap with an axis name) each holding half the batch update the codebook as
  one device holding all of it: counts and sums are psum'd; restarts agree across devices."""
  z = jax.random.normal(jax.random.key(6), (8, D))
  whole = EMACodebook(K, D, decay=0.5)
  split = EMACodebook(K, D, decay=0.5, axis_name='data')
  codes = jnp.asarray(np.array([[0.0, 0, 0], [1, 1, 1], [-1, 0, 1], [80, 80, 80]], np.float32))
  state = {'codes': codes, 'ema_count': jnp.array([3.0, 3.0, 3.0, 1.5]),
           'ema_sum': codes * jnp.array([[3.0], [3.0], [3.0], [1.5]]),
           'initialized': jnp.array(True)}
  out, expected = apply(whole, state, z)
  halves, updated = jax.vmap(lambda h: apply(split, state, h), axis_name='data')(z.reshape(2, 4, D))
  for name in ('ema_count', 'ema_sum', 'codes'):
    np.testing.assert_allclose(updated[name][0], updated[name][1])  # Devices agree.
    if name != 'codes':
      np.testing.assert_allclose(updated[name][0][:3], expected[name][:3], rtol=1e-5)
  np.testing.assert_allclose(updated['codes'][0][:3], expected['codes'][:3], rtol=1e-5)
  assert float(updated['ema_count'][0][3]) == 1.0  # Dead on both, restarted identically.
  np.testing.assert_allclose(halves.perplexity[0], out.perplexity, rtol=1e-5)


def test_wrong_code_dim_is_named():
  with pytest.raises(ValueError, match='code_dim=3'):
    EMACodebook(K, D).init(jax.random.key(0), jnp.zeros((2, 5)))
