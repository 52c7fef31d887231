import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
from evosax.algorithms import CMA_ES
from flax import struct
from gymnax.environments import environment, spaces

from wm_jax.world_models.models.controller import LinearController
from wm_jax.world_models.cmaes import episode_return, make_generation, run_generations, strong_types

A = jnp.array([[1.0, 0.5], [-0.3, 0.9]])


@struct.dataclass
class LinearState(environment.EnvState):
  x: jax.Array
  time: int


@struct.dataclass
class LinearParams(environment.EnvParams):
  max_steps_in_episode: int = 10


class LinearSystem(environment.Environment):
  """x' = A x + u, reward -|x'|^2, x_0 ~ N(0, I): the optimal linear controller is u = -A x."""

  @property
  def default_params(self):
    return LinearParams()

  def reset_env(self, key, params):
    x = jax.random.normal(key, (2,))
    return x, LinearState(x=x, time=0)

  def step_env(self, key, state, action, params):
    x = A @ state.x + action
    return x, LinearState(x=x, time=state.time + 1), -jnp.sum(x ** 2), jnp.array(False), {}

  def is_terminated(self, state, params):
    return jnp.array(False)

  def action_space(self, params=None):
    return spaces.Box(-jnp.inf, jnp.inf, (2,))


def raw_policy(controller):
  """The controller's raw outputs are the actions."""
  return lambda theta, obs, key: controller.apply(theta, obs)


def test_cmaes_finds_the_known_optimal_linear_controller():
  env, env_params = LinearSystem(), LinearParams()
  controller = LinearController(2)
  template = controller.init(jax.random.key(0), jnp.zeros(2))
  policy = raw_policy(controller)
  es = CMA_ES(population_size=16, solution=template)
  es_params = es.default_params.replace(std_init=0.1)
  es_state = strong_types(es.init(jax.random.key(1), template, es_params))
  generation = make_generation(env, env_params, policy, es, es_params, num_rollouts=4,
                               max_steps=10, weight_decay=0.0)
  traced = chex.assert_max_traces(generation, n=1)
  run = jax.jit(functools.partial(run_generations, traced, num_generations=40))
  key = jax.random.key(2)
  for chunk in range(5):  # 200 generations, one compiled call per 40.
    es_state, metrics = run(es_state, key, chunk * 40)
  mean = es.get_mean(es_state)
  np.testing.assert_allclose(mean['params']['linear']['kernel'], -A.T, atol=0.05)
  np.testing.assert_allclose(mean['params']['linear']['bias'], 0.0, atol=0.05)
  assert float(metrics.best_return[-1]) > -0.05
  zero = jax.tree.map(jnp.zeros_like, template)
  assert float(episode_return(env, env_params, policy, zero, jax.random.key(3), 10)) < -5.0


def test_return_stops_at_the_first_done():
  env, env_params = LinearSystem(), LinearParams(max_steps_in_episode=3)
  controller = LinearController(2)
  theta = controller.init(jax.random.key(0), jnp.zeros(2))
  key = jax.random.key(4)
  long = episode_return(env, env_params, raw_policy(controller), theta, key, max_steps=20)
  exact = episode_return(env, env_params, raw_policy(controller), theta, key, max_steps=3)
  np.testing.assert_allclose(long, exact)
