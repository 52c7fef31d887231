import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments import spaces

from wm_jax.world_models.models.controller import (LinearController, action_size, carracing_action,
                                      doom_action, gymnax_action, make_controller)


def count_params(model, inputs):
  params = model.init(jax.random.key(0), jnp.zeros((1, inputs)))
  return sum(x.size for x in jax.tree.leaves(params))


def test_parameter_counts_match_paper():
  assert count_params(LinearController(3), 32 + 256) == 867
  assert count_params(LinearController(1, use_bias=False), 64 + 512 + 512) == 1088


def test_the_papers_controllers_from_action_maps():
  carracing = spaces.Box(jnp.array([-1.0, 0.0, 0.0]), jnp.array([1.0, 1.0, 1.0]), (3,))
  doom, doom_policy = make_controller(spaces.Discrete(3), 'doom')
  car, car_policy = make_controller(carracing, 'carracing')
  assert count_params(doom, 64 + 512 + 512) == 1088
  assert count_params(car, 32 + 256) == 867
  theta = jax.tree.map(jnp.ones_like, doom.init(jax.random.key(0), jnp.zeros(4)))
  assert doom_policy(theta, jnp.full(4, 1.0), None) == 2  # tanh(4) > 1/3: right.
  assert doom_policy(theta, jnp.full(4, -1.0), None) == 0
  theta = jax.tree.map(jnp.zeros_like, car.init(jax.random.key(0), jnp.zeros(4)))
  np.testing.assert_allclose(car_policy(theta, jnp.zeros(4), None), [0.0, 0.5, 0.0])
  # The gymnax map on Discrete(3): one output per action, argmax.
  assert count_params(make_controller(spaces.Discrete(3))[0], 10) == 33
  with pytest.raises(ValueError, match="controller.action_map must be 'gymnax' or one of"):
    make_controller(spaces.Discrete(3), 'atari')


def test_carracing_action_map():
  action = carracing_action(jnp.array([[0.0, 0.0, 0.0], [10.0, 10.0, 10.0], [-10.0, -10.0, -10.0]]))
  np.testing.assert_allclose(action, [[0.0, 0.5, 0.0], [1.0, 1.0, 1.0], [-1.0, 0.0, 0.0]], atol=1e-6)


def test_doom_action_thirds():
  raw = jnp.arctanh(jnp.array([-0.9, -0.34, -0.32, 0.0, 0.32, 0.34, 0.9]))[:, None]
  np.testing.assert_array_equal(doom_action(raw), [0, 0, 1, 1, 1, 2, 2])


def test_gymnax_spaces():
  discrete = spaces.Discrete(4)
  assert action_size(discrete) == 4
  assert int(gymnax_action(jnp.array([0.1, 2.0, -1.0, 0.5]), discrete)) == 1
  box = spaces.Box(low=-2.0, high=2.0, shape=(1,))
  assert action_size(box) == 1
  np.testing.assert_allclose(gymnax_action(jnp.array([[0.0], [50.0], [-50.0]]), box),
                             [[0.0], [2.0], [-2.0]], atol=1e-5)
  env, params = gymnax.make('Pendulum-v1')
  space = env.action_space(params)
  action = gymnax_action(jnp.zeros(action_size(space)), space)
  env.step(jax.random.key(0), env.reset(jax.random.key(0), params)[1], action, params)


def test_unsupported_space_is_named():
  with pytest.raises(ValueError, match='Dict'):
    action_size(spaces.Dict({'a': spaces.Discrete(2)}))
