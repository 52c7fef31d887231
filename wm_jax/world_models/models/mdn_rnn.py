"""M: the MDN-RNN of World Models (Ha & Schmidhuber, 2018, appendix A.2).

An LSTM reads [z_t, a_t] (plus, for Doom, a restart flag as an input) and
predicts P(z_{t+1} | a_t, z_t, h_t): for every latent dimension independently, a mixture of
`num_mixtures` Gaussians (log mixing weights, means, log standard deviations), optionally with a
done logit and a reward prediction. Time runs in `lax.scan` (through `nn.scan`).

Parameter counts (asserted in tests/mdn_rnn_test.py): 422,368 for CarRacing (z 32, action 3,
256 units) and 1,678,785 for Doom (z 64, action 1, restart flag, 512 units, done head).

The LSTM state is zeroed at every restart (an episode's first step), with or without the flag
as an input, so episodes packed end to end into one training stream do not share memory.

Temperature tau at sampling: mixture logits are divided by tau and the Gaussian noise is scaled
by sqrt(tau); tau -> 0 returns the most likely component's mean.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp


class MixtureOutput(NamedTuple):
  """M's prediction for z_{t+1}; each field [..., z_size, num_mixtures] unless noted."""
  logits: jax.Array  # Unnormalised mixture log-weights.
  means: jax.Array
  log_stds: jax.Array
  done_logits: jax.Array | None  # [...]: logit that the episode ends at t+1.
  rewards: jax.Array | None  # [...]: predicted reward of step t.


class _MDNStep(nn.Module):
  """One step: (carry, (z [B, z], action [B, A], restart [B])) -> (carry, head outputs [B, O])."""
  hidden_size: int
  num_outputs: int
  use_restart: bool
  dtype: Any

  @nn.compact
  def __call__(self, carry, inputs):
    z, action, restart = inputs
    x = jnp.concatenate([z, action], axis=-1)
    keep = (1.0 - restart)[:, None]
    carry = jax.tree.map(lambda c: c * keep, carry)
    if self.use_restart:  # The flag as an input too (the paper's Doom M).
      x = jnp.concatenate([x, restart[:, None]], axis=-1)
    carry, h = nn.OptimizedLSTMCell(self.hidden_size, dtype=self.dtype, name='lstm')(carry, x)
    return carry, nn.Dense(self.num_outputs, dtype=self.dtype, name='head')(h)


class MDNRNN(nn.Module):
  """`__call__(z [B, T, z], actions [B, T, A], restarts [B, T] | None, carry | None)`
  -> (final carry (c, h), MixtureOutput with a [B, T] prefix)."""
  z_size: int
  action_size: int
  hidden_size: int = 256
  num_mixtures: int = 5
  use_restart: bool = False
  predict_done: bool = False
  predict_reward: bool = False
  # Compute dtype ('bfloat16': mixed precision). Parameters and the LSTM's cell state stay
  # float32; the head's outputs are cast to float32.
  dtype: Any = jnp.float32

  @property
  def num_outputs(self) -> int:
    return 3 * self.num_mixtures * self.z_size + int(self.predict_done) + int(self.predict_reward)

  def initial_carry(self, batch_size: int) -> tuple[jax.Array, jax.Array]:
    zeros = jnp.zeros((batch_size, self.hidden_size))
    return zeros, zeros

  @nn.compact
  def __call__(self, z, actions, restarts=None, carry=None):
    batch, steps = z.shape[:2]
    if z.shape[-1] != self.z_size or actions.shape[-1] != self.action_size:
      raise ValueError(f'MDNRNN expects z [B, T, {self.z_size}] and actions [B, T, '
                       f'{self.action_size}], got {z.shape} and {actions.shape}.')
    if restarts is None:
      restarts = jnp.zeros((batch, steps))
    if carry is None:
      carry = self.initial_carry(batch)
    scan = nn.scan(_MDNStep, variable_broadcast='params', split_rngs={'params': False},
                   in_axes=1, out_axes=1)
    carry, out = scan(self.hidden_size, self.num_outputs, self.use_restart, self.dtype,
                      name='rnn')(carry, (z, actions.astype(z.dtype), restarts.astype(z.dtype)))
    return carry, self.split(out.astype(jnp.float32))

  def split(self, out: jax.Array) -> MixtureOutput:
    """Head outputs [..., num_outputs] -> MixtureOutput."""
    size = self.num_mixtures * self.z_size
    shape = out.shape[:-1] + (self.z_size, self.num_mixtures)
    logits, means, log_stds = (out[..., i * size:(i + 1) * size].reshape(shape) for i in range(3))
    rest = out[..., 3 * size:]
    done_logits = rest[..., 0] if self.predict_done else None
    rewards = rest[..., -1] if self.predict_reward else None
    return MixtureOutput(logits, means, log_stds, done_logits, rewards)


def mdn_step(mdn: MDNRNN, params, z: jax.Array, action_features: jax.Array, first: jax.Array,
             memory: tuple[jax.Array, jax.Array]) -> tuple[tuple[jax.Array, jax.Array], MixtureOutput]:
  """One unbatched step of M: z [z], action features [A], first (restart flag), memory (c, h)
  each [hidden] -> (new memory, MixtureOutput for z_{t+1} without batch or time axes)."""
  cell, hidden = memory
  (cell, hidden), mixture = mdn.apply(
      {'params': params}, z[None, None], action_features.astype(z.dtype)[None, None],
      jnp.asarray(first, z.dtype)[None, None], (cell[None], hidden[None]))
  return (cell[0], hidden[0]), jax.tree.map(lambda x: x[0, 0], mixture)


def controller_observation(z: jax.Array, cell: jax.Array, hidden: jax.Array,
                           include_cell: bool) -> jax.Array:
  """C's input: [z, h], or [z, c, h] (Doom)."""
  return jnp.concatenate([z, cell, hidden] if include_cell else [z, hidden])


def mixture_log_prob(mixture: MixtureOutput, z_next: jax.Array) -> jax.Array:
  """log P(z_next) per dimension: [..., z] (a sum over the mixture, in log space)."""
  z = z_next[..., None]
  log_weights = jax.nn.log_softmax(mixture.logits, axis=-1)
  log_normal = (-0.5 * jnp.square((z - mixture.means) * jnp.exp(-mixture.log_stds))
                - mixture.log_stds - 0.5 * jnp.log(2 * jnp.pi))
  return jax.nn.logsumexp(log_weights + log_normal, axis=-1)


def sample_mixture(key: jax.Array, mixture: MixtureOutput, temperature: float | jax.Array
                   ) -> jax.Array:
  """Samples z_{t+1} [..., z] at temperature tau (logits / tau, noise * sqrt(tau)).

  tau = 0 is allowed and returns the mean of each dimension's most likely component.
  """
  key_component, key_noise = jax.random.split(key)
  tau = jnp.asarray(temperature, mixture.logits.dtype)
  greedy = jnp.argmax(mixture.logits, axis=-1)
  sampled = jax.random.categorical(key_component, mixture.logits / jnp.maximum(tau, 1e-6), axis=-1)
  component = jnp.where(tau > 0, sampled, greedy)[..., None]
  mean = jnp.take_along_axis(mixture.means, component, axis=-1)[..., 0]
  std = jnp.exp(jnp.take_along_axis(mixture.log_stds, component, axis=-1)[..., 0])
  return mean + std * jnp.sqrt(tau) * jax.random.normal(key_noise, mean.shape, mean.dtype)


ACTION_INPUTS = ('one_hot', 'centered')


def action_features(actions: jax.Array, num_actions: int | None, action_input: str = 'one_hot',
                    action_shape: tuple[int, ...] = ()) -> jax.Array:
  """Actions [..., *action_shape] as M's input: for discrete actions (`num_actions` of them)
  one-hot [..., n] or, with `action_input='centered'`, [..., 1] = index - (n - 1) / 2; for
  continuous ones floats [..., A] (a scalar action as [..., 1])."""
  if action_input not in ACTION_INPUTS:
    raise ValueError(f'mdn.action_input must be one of {ACTION_INPUTS}, got {action_input!r}.')
  if num_actions is not None and action_input == 'centered':
    return (jnp.asarray(actions, jnp.float32) - (num_actions - 1) / 2)[..., None]
  if num_actions is not None:
    return jax.nn.one_hot(actions, num_actions)
  actions = jnp.asarray(actions, jnp.float32)
  return actions.reshape(*actions.shape[:actions.ndim - len(action_shape)], -1)
