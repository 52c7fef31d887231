"""The real environment seen through V and M: what the controller observes outside the dream.

`LatentEnv` wraps a pixel gymnax environment: every frame is encoded by V (z = mu, the
posterior mean; with `sample_z`, z ~ N(mu, sigma) as the paper's agents do) and M's LSTM reads
(z_t, a_t, restart) after every action, so the observation is [z_t, h_t] (or [z_t, c_t, h_t]
with `include_cell`): the same as the dream's (`DreamEnv`). A controller trained in the dream
therefore runs here unchanged, through the same `wm_jax.world_models.cmaes.episode_return`, fully
jitted and vmapped over episodes.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from wm_jax.envs.host import step_without_reset
from wm_jax.world_models.cmaes import rollout
from wm_jax.world_models.models.conv_vae import ConvVAE
from wm_jax.world_models.models.mdn_rnn import MDNRNN, controller_observation, mdn_step


@struct.dataclass
class LatentState(environment.EnvState):
  env_state: Any
  z: jax.Array  # What C and M read of the current frame: V's mu, or z ~ N(mu, sigma)
  mu: jax.Array  # V's posterior mean of the current frame
  logvar: jax.Array  # and its log-variance
  cell: jax.Array
  hidden: jax.Array
  first: jax.Array
  time: int


@struct.dataclass
class LatentParams(environment.EnvParams):
  env_params: Any = None
  vae_params: Any = None  # V's Linen params ({'params': ...} not included).
  mdn_params: Any = None  # M's Linen params.
  sample_z: bool = True  # z ~ N(mu, sigma), as the paper's agents; False: z = mu.
  max_steps_in_episode: int = 500


class LatentEnv(environment.Environment):
  """A pixel environment observed as [z_t, (c_t,) h_t] through V and M."""

  def __init__(self, env: environment.Environment, vae: ConvVAE, mdn: MDNRNN, action_features,
               include_cell: bool = False):
    super().__init__()
    self.env = env
    self.vae = vae
    self.mdn = mdn
    self.action_features = action_features
    self.include_cell = include_cell

  @property
  def default_params(self) -> LatentParams:
    return LatentParams(env_params=self.env.default_params)

  def _encode(self, frame, key, params: LatentParams) -> dict[str, jax.Array]:
    mu, logvar = self.vae.apply({'params': params.vae_params}, frame[None], method=ConvVAE.encode)
    mu, logvar = mu[0], logvar[0]
    # A key of its own, so that the environment's randomness is the same either way.
    noise = jax.random.normal(jax.random.fold_in(key, 7), mu.shape)
    z = jnp.where(params.sample_z, mu + jnp.exp(0.5 * logvar) * noise, mu)
    return {'z': z, 'mu': mu, 'logvar': logvar}

  def _observe(self, state: LatentState) -> jax.Array:
    return controller_observation(state.z, state.cell, state.hidden, self.include_cell)

  def reset_env(self, key, params: LatentParams):
    frame, env_state = self.env.reset_env(key, params.env_params)
    zeros = jnp.zeros(self.mdn.hidden_size)
    state = LatentState(env_state=env_state, **self._encode(frame, key, params), cell=zeros,
                        hidden=zeros, first=jnp.array(True), time=0)
    return self._observe(state), state

  def step_env(self, key, state: LatentState, action, params: LatentParams):
    frame, env_state, reward, terminated, info = self.env.step_env(key, state.env_state, action,
                                                                   params.env_params)
    (cell, hidden), _ = mdn_step(self.mdn, params.mdn_params, state.z,
                                 self.action_features(action), state.first,
                                 (state.cell, state.hidden))
    state = LatentState(env_state=env_state, **self._encode(frame, key, params), cell=cell,
                        hidden=hidden, first=jnp.array(False), time=state.time + 1)
    return self._observe(state), state, reward, terminated, info

  def step(self, key, state: LatentState, action, params: LatentParams | None = None):
    """gymnax's step; over a host game (no auto-reset, `wm_jax.envs.host`) without the reset."""
    if getattr(self.env, 'auto_reset', True):
      return super().step(key, state, action, params)
    return step_without_reset(self, key, state, action, params)

  def is_terminated(self, state: LatentState, params: LatentParams) -> jax.Array:
    return self.env.is_terminated(state.env_state, params.env_params)

  def is_truncated(self, state: LatentState, params: LatentParams) -> jax.Array:
    return state.time >= params.max_steps_in_episode

  @property
  def name(self) -> str:
    return f'Latent{self.env.name}'

  @property
  def num_actions(self) -> int:
    return self.env.num_actions

  def action_space(self, params: LatentParams | None = None):
    return self.env.action_space(params.env_params if params is not None else None)

  def observation_space(self, params=None):
    size = self.mdn.z_size + (2 if self.include_cell else 1) * self.mdn.hidden_size
    return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)


def record_latent_step(state: LatentState, action, reward, terminated, truncated
                       ) -> dict[str, jax.Array]:
  """What the latent datasets hold of a real step through `LatentEnv` (`rollout`'s `record`):
  V's mu and log-variance of the frame the action was taken from, the action, its reward, and
  whether the episode ended after it (`dones`) by termination (`terminals`)."""
  return {'mu': state.mu, 'logvar': state.logvar, 'actions': action,
          'rewards': reward.astype(jnp.float32), 'dones': terminated | truncated,
          'terminals': terminated}


def play_latent_episodes(env: LatentEnv, env_params: LatentParams, policy, theta,
                         keys: jax.Array, max_steps: int
                         ) -> tuple[np.ndarray, list[dict[str, np.ndarray]]]:
  """One episode of `policy(theta, ., .)` per key [E], vmapped in one jitted call: their returns
  [E] and, per episode, `record_latent_step`'s arrays [length, ...] (on host)."""
  returns, steps, alive = jax.device_get(jax.jit(jax.vmap(
      lambda key: rollout(env, env_params, policy, theta, key, max_steps,
                          record_latent_step)))(keys))
  return returns, [{name: values[e, :length] for name, values in steps.items()}
                   for e, length in enumerate(alive.sum(axis=1))]
