"""What C acts in: the real environment (built once per run), and the dream and the real
environment seen through a workdir's trained V and M."""

from __future__ import annotations

import functools
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from gymnax.environments import spaces

from wm_jax.envs.pixels import make_pixel_env
from wm_jax.world_models.dream import DreamEnv, DreamParams
from wm_jax.world_models.latent_env import LatentEnv, LatentParams
from wm_jax.world_models.models.controller import make_controller
from wm_jax.world_models.models.conv_vae import ConvVAE
from wm_jax.world_models.models.mdn_rnn import MDNRNN, action_features


class RealEnv(NamedTuple):
  """`env.name` as a gymnax environment, with its action space and M's action input."""
  env: Any
  params: Any  # the environment's default params
  action_space: Any
  features: Callable[[jax.Array], jax.Array]  # actions [..., *shape] -> M's input [..., A]
  action_size: int  # A


@functools.cache
def _real_env(name: str, num_workers: int, action_input: str) -> RealEnv:
  env, params = make_pixel_env(name, num_workers)
  space = env.action_space(params)
  discrete = isinstance(space, spaces.Discrete)
  features = functools.partial(action_features, num_actions=int(space.n) if discrete else None,
                               action_input=action_input,
                               action_shape=() if discrete else tuple(space.shape))
  size = int(features(space.sample(jax.random.key(0))).shape[-1])
  return RealEnv(env, params, space, features, size)


def real_env(config: ml_collections.ConfigDict) -> RealEnv:
  """The environment of `env.name` (one per process for a given name, worker count and
  `mdn.action_input`: a host game's worker processes start once)."""
  return _real_env(config.env.name, config.env.num_workers, config.mdn.action_input)


def vae_model(config: ml_collections.ConfigDict) -> ConvVAE:
  return ConvVAE(**config.vae.model)


def mdn_model(config: ml_collections.ConfigDict) -> MDNRNN:
  """M over V's latents and the environment's actions."""
  return MDNRNN(z_size=config.vae.model.z_size, action_size=real_env(config).action_size,
                **config.mdn.model)


class World(NamedTuple):
  """The dream of a trained M and the real environment through V and M, with C's policy."""
  dream: DreamEnv
  dream_params: DreamParams
  real: LatentEnv
  real_params: LatentParams
  policy: Any  # (controller params, observation, key) -> action
  template: Any  # C's parameters at their initial value (zero): CMA-ES's solution template
  vae_params: Any


def build_world(config: ml_collections.ConfigDict, vae_params, mdn_params,
                initial_latents: dict[str, np.ndarray]) -> World:
  """The dream (M at `dream.temperature` from the first-frame latents {'mu', 'logvar'} [N, z];
  its `default_params` are these) and the real environment through V and M, episodes capped at
  `env.max_steps`."""
  real, mdn = real_env(config), mdn_model(config)
  c = config.controller
  dream_params = DreamParams(
      mdn_params=mdn_params, initial_mu=jnp.asarray(initial_latents['mu']),
      initial_logvar=jnp.asarray(initial_latents['logvar']),
      temperature=config.dream.temperature, sample_z=config.mdn.sample_z,
      sample_done=config.dream.sample_done,
      max_steps_in_episode=config.env.max_steps)
  dream = DreamEnv(mdn, real.action_space, real.features, include_cell=c.include_cell,
                   params=dream_params)
  latent = LatentEnv(real.env, vae_model(config), mdn, real.features, include_cell=c.include_cell)
  latent_params = LatentParams(env_params=real.params, vae_params=vae_params,
                               mdn_params=mdn_params, sample_z=c.sample_z,
                               max_steps_in_episode=config.env.max_steps)
  controller, policy = make_controller(real.action_space, c.action_map)
  template = controller.init(jax.random.key(0), jnp.zeros(dream.observation_space().shape))
  return World(dream, dream_params, latent, latent_params, policy, template, vae_params)
