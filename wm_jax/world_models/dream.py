"""The dream: M's generated world as a gymnax `Environment` (pure reset/step, jit, vmap).

reset draws an initial latent from the stored first-frame encodings (z ~ N(mu, sigma); z = mu
for an M trained on posterior means, `sample_z=False`) and zeroes the LSTM state. step feeds
(z_t, a_t) to M (with the restart flag on an episode's first step), samples z_{t+1} from the
mixture at temperature tau, ends the episode when the done logit is > 0 (as in the paper) or,
with `sample_done`, with probability sigmoid(logit), and pays the reward head's prediction or,
without one, `survival_reward` per step. The observation is the controller's input: [z_t, h_t],
or [z_t, c_t, h_t] with `include_cell` (Doom), where (c_t, h_t) is the LSTM state before it has
read z_t, as in the paper. Because it is a gymnax environment, any gymnax learner runs in it.

M's parameters and the initial latents travel in `DreamParams`, so one compiled dream serves
any trained M of the same shape, and several can be vmapped. A dream built with `params` returns
them as its `default_params` (`world.build_world` does). A trained workdir's dream is registered
with gymnax as `DREAM_ENV_ID` ('WorldModels-Dream-v0', factory
`stages.controller.trained_dream`) when `wm_jax.world_models` is imported, so
`gymnax.make(DREAM_ENV_ID, workdir=..., config='default:tiny')` and evosax's
`GymnaxProblem(DREAM_ENV_ID, policy, env_kwargs={'workdir': ..., 'config': ...})` run in it.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
from flax import struct
from gymnax.environments import environment, spaces

from wm_jax.world_models.models.mdn_rnn import (MDNRNN, controller_observation, mdn_step,
                                                sample_mixture)

DREAM_ENV_ID = 'WorldModels-Dream-v0'  # gymnax's id of a trained workdir's dream


@struct.dataclass
class DreamState(environment.EnvState):
  z: jax.Array  # [z_size]
  cell: jax.Array  # [hidden]
  hidden: jax.Array  # [hidden]
  first: jax.Array  # bool: the next step is the episode's first (restart flag)
  done: jax.Array  # bool: M declared the episode over
  time: int


@struct.dataclass
class DreamParams(environment.EnvParams):
  mdn_params: Any = None  # M's Linen params ({'params': ...} not included).
  initial_mu: jax.Array | None = None  # [N, z_size] first-frame encodings
  initial_logvar: jax.Array | None = None  # [N, z_size]
  temperature: float = 1.0
  # True: episodes start from z ~ N(mu, sigma) (M learned sampled z, the paper); False: z = mu.
  sample_z: bool = True
  # False: done when the done logit > 0 (the paper). True: done ~ Bernoulli(sigmoid(logit)).
  sample_done: bool = False
  survival_reward: float = 1.0
  max_steps_in_episode: int = 500


def _check_params(params: DreamParams) -> None:
  if params.mdn_params is None or params.initial_mu is None or params.initial_logvar is None:
    raise ValueError(
        'The dream needs DreamParams holding M and where episodes start: DreamParams('
        'mdn_params=..., initial_mu=[N, z], initial_logvar=[N, z]) passed to reset and step, '
        'e.g. wm_jax.world_models.stages.controller.load_world(config, workdir).dream_params '
        '(a trained workdir) or world.build_world(config, vae_params, mdn_params, '
        f'initial_latents).dream_params; gymnax.make({DREAM_ENV_ID!r}, workdir=..., config=...) '
        "builds a dream whose default params are a trained workdir's.")


class DreamEnv(environment.Environment):
  """M's dream. `action_space` is the real environment's; actions reach M as `action_features`.
  `params` (e.g. a trained workdir's) are its `default_params`; without them the default holds no
  M and reset and step refuse it."""

  def __init__(self, mdn: MDNRNN, action_space, action_features, include_cell: bool = False,
               params: DreamParams | None = None):
    super().__init__()
    self.mdn = mdn
    self._action_space = action_space
    self.action_features = action_features  # action -> [action_size] floats
    self.include_cell = include_cell
    self._params = params

  @property
  def default_params(self) -> DreamParams:
    return DreamParams() if self._params is None else self._params

  def _observe(self, state: DreamState) -> jax.Array:
    return controller_observation(state.z, state.cell, state.hidden, self.include_cell)

  def reset_env(self, key, params: DreamParams):
    _check_params(params)
    key_pick, key_z = jax.random.split(key)
    i = jax.random.randint(key_pick, (), 0, params.initial_mu.shape[0])
    mu, logvar = params.initial_mu[i], params.initial_logvar[i]
    noise = jnp.exp(0.5 * logvar) * jax.random.normal(key_z, mu.shape)
    z = jnp.where(params.sample_z, mu + noise, mu)
    zeros = jnp.zeros(self.mdn.hidden_size)
    state = DreamState(z=z, cell=zeros, hidden=zeros, first=jnp.array(True),
                       done=jnp.array(False), time=0)
    return self._observe(state), state

  def step_env(self, key, state: DreamState, action, params: DreamParams):
    _check_params(params)
    (cell, hidden), mixture = mdn_step(self.mdn, params.mdn_params, state.z,
                                       self.action_features(action), state.first,
                                       (state.cell, state.hidden))
    key_z, key_done = jax.random.split(key)
    z = sample_mixture(key_z, mixture, params.temperature)
    done = jnp.array(False)
    if mixture.done_logits is not None:
      sampled = jax.random.bernoulli(key_done, jax.nn.sigmoid(mixture.done_logits))
      done = jnp.where(params.sample_done, sampled, mixture.done_logits > 0)
    reward = mixture.rewards if mixture.rewards is not None else jnp.float32(params.survival_reward)
    state = DreamState(z=z, cell=cell, hidden=hidden, first=jnp.array(False), done=done,
                       time=state.time + 1)
    return self._observe(state), state, reward.astype(jnp.float32), done, {}

  def is_terminated(self, state: DreamState, params: DreamParams) -> jax.Array:
    return state.done

  @property
  def name(self) -> str:
    return 'Dream'

  @property
  def num_actions(self) -> int:
    return getattr(self._action_space, 'n', 1)

  def action_space(self, params=None):
    return self._action_space

  def observation_space(self, params=None):
    size = self.mdn.z_size + (2 if self.include_cell else 1) * self.mdn.hidden_size
    return spaces.Box(-jnp.inf, jnp.inf, (size,), jnp.float32)

