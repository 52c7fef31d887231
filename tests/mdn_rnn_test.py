import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.world_models.models.mdn_rnn import MDNRNN, MixtureOutput, mixture_log_prob, sample_mixture


def count_params(model, batch=1, steps=2):
  z = jnp.zeros((batch, steps, model.z_size))
  a = jnp.zeros((batch, steps, model.action_size))
  params = jax.eval_shape(model.init, jax.random.key(0), z, a)
  return sum(x.size for x in jax.tree.leaves(params))


def test_parameter_counts_match_paper():
  assert count_params(MDNRNN(z_size=32, action_size=3, hidden_size=256)) == 422_368
  doom = MDNRNN(z_size=64, action_size=1, hidden_size=512, use_restart=True, predict_done=True)
  assert count_params(doom) == 1_678_785


def init(model, batch=2, steps=5, seed=0):
  keys = jax.random.split(jax.random.key(seed), 3)
  z = jax.random.normal(keys[0], (batch, steps, model.z_size))
  a = jax.random.normal(keys[1], (batch, steps, model.action_size))
  return model.init(keys[2], z, a), z, a


def test_scan_equals_a_step_by_step_loop():
  model = MDNRNN(z_size=4, action_size=2, hidden_size=8, predict_done=True, predict_reward=True)
  params, z, a = init(model)
  _, whole = jax.jit(model.apply)(params, z, a)
  carry = None
  for t in range(z.shape[1]):
    carry, step = model.apply(params, z[:, t:t + 1], a[:, t:t + 1], carry=carry)
    for x, y in zip(step, whole):
      np.testing.assert_allclose(x[:, 0], y[:, t], atol=1e-5)
  assert whole.logits.shape == (2, 5, 4, 5) and whole.done_logits.shape == (2, 5)
  assert whole.rewards.shape == (2, 5)


def test_restart_flag_zeroes_the_state():
  model = MDNRNN(z_size=4, action_size=1, hidden_size=8, use_restart=True)
  params, z, a = init(model, steps=6)
  restarts = jnp.zeros((2, 6)).at[:, 3].set(1.0)
  _, with_restart = model.apply(params, z, a, restarts)
  _, fresh = model.apply(params, z[:, 3:], a[:, 3:], restarts[:, 3:])
  np.testing.assert_allclose(with_restart.means[:, 3:], fresh.means, atol=1e-5)
  _, without = model.apply(params, z, a)
  assert not np.allclose(without.means[:, 3:], fresh.means, atol=1e-3)


def test_log_prob_of_one_component_is_the_gaussian_density():
  mixture = MixtureOutput(logits=jnp.zeros((3, 1)), means=jnp.array([[0.5], [-1.0], [2.0]]),
                          log_stds=jnp.log(jnp.array([[1.0], [0.5], [2.0]])), done_logits=None,
                          rewards=None)
  z = jnp.array([0.0, -1.5, 1.0])
  sigma = jnp.array([1.0, 0.5, 2.0])
  expected = -0.5 * ((z - mixture.means[:, 0]) / sigma) ** 2 - jnp.log(sigma * jnp.sqrt(2 * jnp.pi))
  np.testing.assert_allclose(mixture_log_prob(mixture, z), expected, rtol=1e-6)


def two_component_mixture(n):
  """Each of n dims: component 0 (weight ~0.73) at -2, component 1 at +3, both std 0.5."""
  shape = (n, 2)
  return MixtureOutput(logits=jnp.broadcast_to(jnp.array([1.0, 0.0]), shape),
                       means=jnp.broadcast_to(jnp.array([-2.0, 3.0]), shape),
                       log_stds=jnp.full(shape, jnp.log(0.5)), done_logits=None, rewards=None)


def test_temperature_zero_collapses_onto_the_likeliest_mean():
  samples = sample_mixture(jax.random.key(0), two_component_mixture(1000), 0.0)
  np.testing.assert_allclose(samples, -2.0)


def test_higher_temperature_spreads_samples():
  mixture = two_component_mixture(20_000)
  spreads = []
  for tau in (0.1, 1.0, 2.0):
    samples = sample_mixture(jax.random.key(1), mixture, tau)
    far_component = float(jnp.mean(samples > 0.5))
    spreads.append((float(jnp.std(samples[samples < 0.5])), far_component))
  (std_low, far_low), (std_one, far_one), (std_high, far_high) = spreads
  assert std_low < std_one < std_high  # Noise scaled by sqrt(tau).
  np.testing.assert_allclose(std_one, 0.5, rtol=0.05)
  assert far_low < 0.01 and abs(far_one - 0.269) < 0.02 and far_high > far_one + 0.05


def test_wrong_input_sizes_are_named():
  model = MDNRNN(z_size=4, action_size=2, hidden_size=8)
  with pytest.raises(ValueError, match=r'z \[B, T, 4\] and actions \[B, T, 2\]'):
    model.init(jax.random.key(0), jnp.zeros((1, 3, 5)), jnp.zeros((1, 3, 2)))
