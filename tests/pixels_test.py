import jax
import jax.numpy as jnp
import numpy as np
import pytest
from gymnax.environments.classic_control.cartpole import EnvParams, EnvState

from wm_jax.envs.pixels import CartPoleRenderer, MINATAR_PALETTE, make_pixel_env

POLE = np.array([150, 90, 40])
CART = np.array([30, 30, 30])


def render(x=0.0, theta=0.0):
  state = EnvState(x=jnp.float32(x), x_dot=0.0, theta=jnp.float32(theta), theta_dot=0.0, time=0)
  return np.asarray(jax.jit(CartPoleRenderer())(state, EnvParams()))


def pixels_of(frame, colour):
  rows, cols = np.nonzero(np.all(np.abs(frame.astype(int) - colour) < 8, axis=-1))
  assert len(rows), f'no pixel of colour {colour}'
  return rows, cols


def test_frame_format():
  frame = render()
  assert frame.shape == (64, 64, 3) and frame.dtype == np.uint8
  assert 0 < frame.min() and frame.max() < 255  # Clear of the sigmoid's saturated ends.


def test_cart_moves_with_position():
  centres = [pixels_of(render(x=x), CART)[1].mean() for x in (-2.0, 0.0, 2.0)]
  assert centres[0] < 20 < centres[1] < 44 < centres[2]
  assert abs(centres[1] - 32) < 1.5


def test_pole_follows_angle():
  def tip(theta):
    rows, cols = pixels_of(render(theta=theta), POLE)
    top = rows == rows.min()
    return rows.min(), cols[top].mean()
  upright_row, upright_col = tip(0.0)
  right_row, right_col = tip(0.2)
  left_row, left_col = tip(-0.2)
  assert right_col > upright_col + 3 and left_col < upright_col - 3  # Leans towards +x for +theta.
  assert upright_row + 2 < tip(0.6)[0]  # A leaning pole reaches less high.
  horizontal_rows, _ = pixels_of(render(theta=np.pi / 2), POLE)
  assert horizontal_rows.max() - horizontal_rows.min() <= 4


def test_renderer_vmaps():
  states = EnvState(x=jnp.linspace(-2, 2, 5), x_dot=jnp.zeros(5), theta=jnp.zeros(5),
                    theta_dot=jnp.zeros(5), time=jnp.zeros(5, jnp.int32))
  frames = jax.vmap(CartPoleRenderer(), in_axes=(0, None))(states, EnvParams())
  assert frames.shape == (5, 64, 64, 3)
  assert len({frames[i].tobytes() for i in range(5)}) == 5


@pytest.mark.parametrize('name', ['CartPole-v1', 'Breakout-MinAtar'])
def test_pixel_env_is_a_gymnax_env(name):
  env, params = make_pixel_env(name)
  keys = jax.random.split(jax.random.key(0), 4)
  obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
  assert obs.shape == (4, 64, 64, 3) and obs.dtype == jnp.uint8
  actions = jnp.zeros(4, jnp.int32)
  obs, state, reward, terminated, truncated, info = jax.vmap(
      env.step, in_axes=(0, 0, 0, None))(keys, state, actions, params)
  assert obs.shape == (4, 64, 64, 3) and reward.shape == (4,)
  assert env.observation_space(params).shape == (64, 64, 3)


def test_minatar_colours():
  env, params = make_pixel_env('Breakout-MinAtar')
  obs, _ = env.reset(jax.random.key(0), params)
  colours = {tuple(c) for c in np.asarray(obs).reshape(-1, 3)}
  assert tuple(MINATAR_PALETTE[0]) in colours and len(colours) >= 3
  assert colours <= {tuple(c) for c in MINATAR_PALETTE}


def test_unknown_env_is_refused():
  with pytest.raises(ValueError, match='env.name'):
    make_pixel_env('Pong-v5')
