"""C: the linear controller of World Models (Ha & Schmidhuber, 2018, section 2.3).

`LinearController` maps a feature vector (the caller's concatenation of [z, h] or [z, c, h])
to raw outputs W x (+ b). Action maps turn raw outputs into environment actions:
- `carracing_action`: tanh, then steering a0, gas (a1 + 1) / 2, brake clip(a2, 0, 1)
  (288 inputs, 3 outputs, bias: 867 parameters).
- `doom_action`: tanh of one output split into thirds: left (0) / no-op (1) / right (2)
  (1088 inputs, 1 output, no bias: 1088 parameters).
- `gymnax_action`: any gymnax Discrete space (argmax over n outputs) or Box (tanh scaled to the
  bounds), so the controller drives any gymnax environment, the dream included.
Its parameters are a plain pytree: evosax's CMA-ES takes them as its solution template.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
from gymnax.environments import spaces


class LinearController(nn.Module):
  """features [..., F] -> raw outputs [..., action_size]. Initialised at zero, the paper's
  CMA-ES starting mean."""
  action_size: int
  use_bias: bool = True

  @nn.compact
  def __call__(self, features):
    return nn.Dense(self.action_size, use_bias=self.use_bias, kernel_init=nn.initializers.zeros,
                    name='linear')(features)


def carracing_action(raw: jax.Array) -> jax.Array:
  """[..., 3] -> [..., 3] (steer in [-1, 1], gas in [0, 1], brake in [0, 1])."""
  a = jnp.tanh(raw)
  return jnp.stack([a[..., 0], (a[..., 1] + 1.0) / 2.0, jnp.clip(a[..., 2], 0.0, 1.0)], axis=-1)


def doom_action(raw: jax.Array) -> jax.Array:
  """[..., 1] -> [...] int32 in {0: left, 1: no-op, 2: right} by thirds of tanh's range."""
  a = jnp.tanh(raw[..., 0])
  return jnp.where(a < -1.0 / 3.0, 0, jnp.where(a > 1.0 / 3.0, 2, 1)).astype(jnp.int32)


def action_size(space) -> int:
  """How many raw outputs `gymnax_action` needs for a gymnax action space."""
  if isinstance(space, spaces.Discrete):
    return int(space.n)
  if isinstance(space, spaces.Box):
    return int(jnp.prod(jnp.asarray(space.shape))) if space.shape else 1
  raise _unsupported(space)


def gymnax_action(raw: jax.Array, space) -> jax.Array:
  """Raw outputs [..., action_size(space)] -> an action of `space` (argmax, or tanh to bounds)."""
  if isinstance(space, spaces.Discrete):
    return jnp.argmax(raw, axis=-1).astype(space.dtype)
  if isinstance(space, spaces.Box):
    low, high = jnp.asarray(space.low, jnp.float32), jnp.asarray(space.high, jnp.float32)
    action = low + (jnp.tanh(raw) + 1.0) * 0.5 * (high - low)
    return action.reshape(raw.shape[:-1] + tuple(space.shape)).astype(space.dtype)
  raise _unsupported(space)


def make_policy(controller: LinearController, space, action_map: str = 'gymnax'):
  """C as a policy for `wm_jax.world_models.cmaes`: (params, observation, key) -> an action of `space`,
  through `action_map` ('gymnax', 'doom' or 'carracing')."""
  to_action = ACTION_MAPS[action_map][2] if action_map != 'gymnax' else (
      lambda raw: gymnax_action(raw, space))

  def policy(params, observation, key):
    del key  # C is deterministic.
    return to_action(controller.apply(params, observation))
  return policy


# The paper's controllers: action_map -> (outputs, bias, raw outputs -> action).
ACTION_MAPS = {'doom': (1, False, doom_action), 'carracing': (3, True, carracing_action)}


def make_controller(space, action_map: str = 'gymnax') -> tuple[LinearController, Any]:
  """C for `space` with the outputs `action_map` needs: (controller, policy)."""
  if action_map == 'gymnax':
    controller = LinearController(action_size(space))
  elif action_map in ACTION_MAPS:
    size, use_bias, _ = ACTION_MAPS[action_map]
    controller = LinearController(size, use_bias=use_bias)
  else:
    raise ValueError(f"controller.action_map must be 'gymnax' or one of {tuple(ACTION_MAPS)}, "
                     f'got {action_map!r}.')
  return controller, make_policy(controller, space, action_map)


def _unsupported(space) -> ValueError:
  return ValueError(f'No controller action map for the action space {type(space).__name__}; '
                    'expected gymnax Discrete or Box.')
