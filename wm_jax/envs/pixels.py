"""64x64 RGB pixel views of gymnax environments, rendered in JAX (jit- and vmap-able).

gymnax ships no 64x64 RGB environment, so the frames V learns from are drawn here:
- CartPole-v1: track, cart, pole and axle in the classic gym layout, drawn with signed distance
  functions and one pixel of anti-aliasing. Colours stay clear of 0 and 255: V's decoder ends in
  a sigmoid trained with squared error, and a pure white background drives its logits into
  saturation (vanishing gradients; V then outputs a blank frame). The pole is darker and wider
  than gym's, so that its angle, the state that matters most, costs V more squared error. The cart's position maps linearly from
  [-x_threshold, x_threshold] to the frame with a 6-pixel margin; the pole is drawn at its true
  angle but longer than to scale (`CartPoleRenderer.pole_length_px`) so that it stays
  recognisable at 64x64.
- MinAtar games: each channel of the 10x10xC binary grid gets a colour, the highest active
  channel wins, and the grid is upsampled (nearest) to 64x64.

`PixelEnv` wraps a gymnax environment so that its observations are these frames; it is itself a
gymnax `Environment` (auto-reset, jit, vmap), so anything written against gymnax runs on it.
`make_pixel_env` also builds the paper's host games (DoomTakeCover, CarRacing-v3;
`wm_jax.envs.host`), gymnax environments too, whose frames come from worker processes.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
from gymnax.environments import environment, spaces

FRAME_SIZE = 64
Frame = jax.Array  # [64, 64, 3] uint8


def _coverage(signed_distance: jax.Array) -> jax.Array:
  """Fraction of a pixel inside a shape, from its signed distance in pixels (1-pixel ramp)."""
  return jnp.clip(0.5 - signed_distance, 0.0, 1.0)[..., None]


def _paint(image: jax.Array, signed_distance: jax.Array, rgb: tuple[int, int, int]) -> jax.Array:
  alpha = _coverage(signed_distance)
  return image * (1.0 - alpha) + jnp.asarray(rgb, jnp.float32) * alpha


@dataclasses.dataclass(frozen=True)
class CartPoleRenderer:
  """Draws a gymnax CartPole state as a [64, 64, 3] uint8 frame (sizes in pixels)."""
  margin_px: float = 6.0
  track_row: float = 50.0
  cart_width_px: float = 10.0
  cart_height_px: float = 6.0
  pole_length_px: float = 22.0
  pole_width_px: float = 4.0
  axle_radius_px: float = 1.5

  def __call__(self, state, params) -> Frame:
    rows, cols = jnp.meshgrid(jnp.arange(FRAME_SIZE) + 0.5, jnp.arange(FRAME_SIZE) + 0.5,
                              indexing='ij')
    span = FRAME_SIZE - 2 * self.margin_px
    cart_x = self.margin_px + (state.x / params.x_threshold + 1.0) * 0.5 * span
    cart_y = self.track_row - 0.5 * self.cart_height_px
    axle_y = self.track_row - self.cart_height_px + 1.0
    # The pole leans towards +x for positive theta, as in gym's renderer.
    tip_x = cart_x + self.pole_length_px * jnp.sin(state.theta)
    tip_y = axle_y - self.pole_length_px * jnp.cos(state.theta)

    track = jnp.abs(rows - self.track_row) - 0.5
    cart = jnp.maximum(jnp.abs(cols - cart_x) - 0.5 * self.cart_width_px,
                       jnp.abs(rows - cart_y) - 0.5 * self.cart_height_px)
    pole = _segment_distance(cols, rows, cart_x, axle_y, tip_x, tip_y) - 0.5 * self.pole_width_px
    axle = jnp.hypot(cols - cart_x, rows - axle_y) - self.axle_radius_px

    image = jnp.full((FRAME_SIZE, FRAME_SIZE, 3), 225.0)
    image = _paint(image, track, (60, 60, 60))
    image = _paint(image, cart, (30, 30, 30))
    image = _paint(image, pole, (150, 90, 40))
    image = _paint(image, axle, (129, 132, 203))
    return jnp.round(image).astype(jnp.uint8)


def _segment_distance(px, py, ax, ay, bx, by):
  """Distance from points (px, py) to the segment from (ax, ay) to (bx, by)."""
  dx, dy = bx - ax, by - ay
  t = jnp.clip(((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy), 0.0, 1.0)
  return jnp.hypot(px - (ax + t * dx), py - (ay + t * dy))


# Ten well-separated colours for MinAtar channels, index 0 the background; all clear of 0 and
# 255 for the same reason as CartPole's.
MINATAR_PALETTE = np.array([
    (40, 40, 52), (230, 159, 20), (86, 180, 233), (20, 158, 115), (240, 228, 66),
    (20, 114, 178), (213, 94, 20), (204, 121, 167), (235, 235, 235), (150, 150, 150),
    (120, 60, 200)], dtype=np.uint8)


@dataclasses.dataclass(frozen=True)
class MinAtarRenderer:
  """Colours and upsamples a MinAtar observation [10, 10, C] to a [64, 64, 3] uint8 frame."""
  observe: Callable[[Any, Any], jax.Array]  # (state, params) -> [10, 10, C]

  def __call__(self, state, params) -> Frame:
    grid = self.observe(state, params) > 0.5  # [10, 10, C]
    channels = grid.shape[-1]
    if channels >= len(MINATAR_PALETTE):
      raise ValueError(f'MinAtar palette has {len(MINATAR_PALETTE) - 1} colours, got {channels} channels.')
    # The highest active channel wins; 0 means background.
    top = jnp.max(jnp.where(grid, jnp.arange(1, channels + 1), 0), axis=-1)
    index = (jnp.arange(FRAME_SIZE) * grid.shape[0]) // FRAME_SIZE
    top = top[index][:, (jnp.arange(FRAME_SIZE) * grid.shape[1]) // FRAME_SIZE]
    return jnp.asarray(MINATAR_PALETTE)[top]


class PixelEnv(environment.Environment):
  """A gymnax environment whose observations are [64, 64, 3] uint8 frames of the wrapped one."""

  def __init__(self, env: environment.Environment, render: Callable[[Any, Any], Frame]):
    super().__init__()
    self.env = env
    self.render = render

  @property
  def default_params(self):
    return self.env.default_params

  def step_env(self, key, state, action, params):
    _, state, reward, terminated, info = self.env.step_env(key, state, action, params)
    return self.render(state, params), state, reward, terminated, info

  def reset_env(self, key, params):
    _, state = self.env.reset_env(key, params)
    return self.render(state, params), state

  def is_truncated(self, state, params):
    return self.env.is_truncated(state, params)

  def is_terminated(self, state, params):
    return self.env.is_terminated(state, params)

  @property
  def name(self) -> str:
    return f'{self.env.name}-pixels'

  @property
  def num_actions(self) -> int:
    return self.env.num_actions

  def action_space(self, params=None):
    return self.env.action_space(params)

  def observation_space(self, params=None):
    return spaces.Box(0, 255, (FRAME_SIZE, FRAME_SIZE, 3), jnp.uint8)


PIXEL_ENVS = ('CartPole-v1', 'Breakout-MinAtar', 'Asterix-MinAtar', 'Freeway-MinAtar',
              'SpaceInvaders-MinAtar', 'Seaquest-MinAtar')
HOST_ENVS = ('DoomTakeCover', 'CarRacing-v3')  # wm_jax.envs.host: games in worker processes


def make_pixel_env(name: str, num_workers: int = 0):
  """`gymnax.make` with 64x64 RGB observations, or a host game (`HOST_ENVS`) stepped in
  `num_workers` processes (0: one per CPU core). Returns (env, default params)."""
  if name in HOST_ENVS:
    from wm_jax.envs.host import HostEnv  # Imports the games' packages only where used.

    env = HostEnv(name, num_workers or os.cpu_count())
    return env, env.default_params
  import gymnax  # Slow to import (~4 s): only where an environment is built.

  if name not in PIXEL_ENVS:
    raise ValueError(f'No pixel environment env.name={name!r}; expected one of '
                     f'{PIXEL_ENVS + HOST_ENVS}.')
  env, params = gymnax.make(name)
  if name == 'CartPole-v1':
    render = CartPoleRenderer()
  else:
    render = MinAtarRenderer(lambda state, params: env.get_obs(state, params))
  return PixelEnv(env, render), params
