"""The mdn stage: M (the MDN-RNN) trained on V's encoded rollouts.

The whole latent dataset lives on device as flat per-step arrays. Every epoch, on the host, the
episodes are shuffled and laid end to end, the result is cut into `mdn.num_streams` equal
streams, and each stream into chunks of `mdn.chunk_length` steps: an index array [streams,
chunks, chunk_length] into the flat arrays (the paper's packing for Doom). One jitted
`train_epoch` then resamples z ~ N(mu, sigma) for the whole dataset (fresh every epoch, as in
the paper; with `mdn.sample_z=False`, M learns the posterior means z = mu) and runs `lax.scan`
over the chunks, one Adam step per chunk, carrying the LSTM state from chunk to chunk (truncated
backpropagation); the restart flag at each episode's first step zeroes it. Loss: the mixture's
negative log-likelihood of z_{t+1} averaged over dimensions and steps that have a successor,
plus `mdn.done_weight` x the done head's binary cross-entropy (its terminal steps weighted
`mdn.done_positive_weight` x, the paper's Doom `restart_factor`) and the reward head's squared
error where enabled. Gradients clipped at `mdn.grad_clip`; learning rate decayed by
`mdn.lr_decay` per step. A checkpoint every epoch resumes exactly.
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from tqdm import auto as tqdm
from flax import struct
from flax.training import train_state

from wm_jax.common import training
from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.world_models.models.mdn_rnn import MDNRNN, mixture_log_prob
from wm_jax.world_models.workdir import (Workdir, check_trained, fingerprint, open_latents,
                                         producing_stage, stage_checkpoints)
from wm_jax.world_models.world import mdn_model, real_env


class Sequences(struct.PyTreeNode):
  """The latent dataset as flat per-step arrays [N, ...] (episodes end to end)."""
  mu: jax.Array  # [N, z]
  logvar: jax.Array  # [N, z]
  actions: jax.Array  # [N, A] float features (one-hot for discrete actions)
  restarts: jax.Array  # [N] 1.0 at each episode's first step
  has_next: jax.Array  # [N] 1.0 where z_{t+1} belongs to the same episode
  terminals: jax.Array  # [N] 1.0 where the episode ends by termination after step t
  rewards: jax.Array  # [N]


def load_sequences(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0
                   ) -> tuple[Sequences, np.ndarray]:
  """Reads the latent datasets of rounds 0..round_index (the encoded random rollouts, then each
  round's controller rollouts; each checked against `config`), actions as M's input features;
  returns (Sequences on host, episode lengths [E])."""
  episodes = []
  for r in range(round_index + 1):
    source = open_latents(config, workdir, r)
    episodes += [source[i] for i in range(len(source))]
  return pack_sequences(episodes, real_env(config).features)


def pack_sequences(episodes: list[dict[str, np.ndarray]], features
                   ) -> tuple[Sequences, np.ndarray]:
  """Episodes ({'mu', 'logvar' [T, z], 'actions' [T, ...], 'terminals', 'rewards' [T]}) end to
  end as Sequences on host, actions through M's input `features`; and their lengths [E]."""
  lengths = np.array([len(e['mu']) for e in episodes])

  def cat(name):
    return np.concatenate([e[name] for e in episodes])
  first = np.concatenate([np.arange(n) == 0 for n in lengths]).astype(np.float32)
  last = np.concatenate([np.arange(n) == n - 1 for n in lengths])
  return Sequences(
      mu=cat('mu'), logvar=cat('logvar'),
      actions=np.asarray(features(cat('actions')), np.float32),
      restarts=first, has_next=(~last).astype(np.float32),
      terminals=cat('terminals').astype(np.float32), rewards=cat('rewards').astype(np.float32),
  ), lengths


def head_outputs(model: MDNRNN, params, data: Sequences, lengths: np.ndarray,
                 batch_size: int = 64) -> dict[str, np.ndarray]:
  """M run over whole episodes (z = mu, teacher-forced): the heads it has, at every step of
  `data` [N]: 'done_logits' (the episode ends after step t) and 'rewards' (step t's reward).

  `data` and `lengths` as `load_sequences` returns them; the output at step t reads (z_t, a_t),
  as the dream's step does.
  """
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  time = np.arange(int(lengths.max()))
  apply = jax.jit(lambda p, z, a, r: model.apply({'params': p}, z, a, r)[1])
  names = ('done_logits',) * model.predict_done + ('rewards',) * model.predict_reward
  outputs = {name: np.zeros(len(data.mu), np.float32) for name in names}
  for first in range(0, len(lengths), batch_size):
    # The last batch wraps around to the first episodes: one compiled shape.
    episodes = np.arange(first, first + batch_size) % len(lengths)
    valid = time[None] < lengths[episodes][:, None]  # [batch, longest]
    # Steps past an episode's end read step 0: M is causal, and their outputs are dropped.
    index = np.where(valid, starts[episodes][:, None] + time[None], 0)
    output = apply(params, data.mu[index], data.actions[index], data.restarts[index])
    for name in names:
      outputs[name][index[valid]] = np.asarray(getattr(output, name))[valid]
  return outputs


def done_detection(done_logits: np.ndarray, data: Sequences, lengths: np.ndarray,
                   threshold: float = 0.0) -> dict[str, float]:
  """How M's done head would end the dream on real episodes: `done_logits` [N] as
  `head_outputs` gives them for `data` and `lengths`. A step "fires" where the logit exceeds
  `threshold` (the dream's with `dream.sample_done=False`: 0). Returns the number of episodes
  that end in a death, the fraction of them whose last step fires (`death_recall`) and the
  fraction of the other steps that fire (`false_fire_rate`)."""
  fires = done_logits > threshold
  terminals = np.asarray(data.terminals) > 0
  last = np.cumsum(lengths) - 1
  deaths = int(terminals[last].sum())
  return {'deaths': deaths,
          'death_recall': float((terminals & fires)[last].sum() / max(deaths, 1)),
          'false_fire_rate': float(fires[~terminals].mean())}


def reward_prediction(predicted: np.ndarray, data: Sequences, lengths: np.ndarray
                      ) -> dict[str, float | None]:
  """How M's reward head would pay real episodes in the dream: `predicted` [N] as `head_outputs`
  gives them for `data` and `lengths`. Returns the mean real and predicted returns (sums over
  each episode), their correlation across episodes (None where either is constant) and the
  root-mean-square error per step."""
  rewards = np.asarray(data.rewards, np.float64)
  episode = np.repeat(np.arange(len(lengths)), lengths)
  real_returns, predicted_returns = (np.bincount(episode, weights=x) for x in (rewards, predicted))
  varies = len(lengths) > 1 and real_returns.std() > 0 and predicted_returns.std() > 0
  return {'real_return': float(real_returns.mean()),
          'predicted_return': float(predicted_returns.mean()),
          'return_correlation': (float(np.corrcoef(real_returns, predicted_returns)[0, 1])
                                 if varies else None),
          'reward_rmse': float(np.sqrt(np.mean(np.square(predicted - rewards))))}


def check_steps(num_steps: int, num_streams: int, chunk_length: int, source: str) -> None:
  """Raises a ValueError if `source`'s `num_steps` steps cannot fill the streams of an epoch."""
  if num_steps < num_streams * chunk_length:
    raise ValueError(
        f'{source} hold {num_steps} steps, too few for M\'s epoch of mdn.num_streams='
        f'{num_streams} streams of mdn.chunk_length={chunk_length} steps; collect more '
        '(collect.num_episodes) or lower them.')


def epoch_index(lengths: np.ndarray, num_streams: int, chunk_length: int, seed: int,
                epoch: int) -> np.ndarray:
  """Shuffled episodes, end to end, cut into [num_streams, chunks, chunk_length] flat indices."""
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  order = np.random.default_rng([seed, epoch]).permutation(len(lengths))
  flat = np.concatenate([np.arange(starts[e], starts[e] + lengths[e]) for e in order])
  check_steps(len(flat), num_streams, chunk_length, 'The latent datasets')
  chunks = len(flat) // num_streams // chunk_length
  per_stream = chunks * chunk_length
  return flat[:num_streams * per_stream].reshape(num_streams, chunks, chunk_length)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array
                       ) -> train_state.TrainState:
  model = mdn_model(config)
  params = model.init(rng, jnp.zeros((1, 1, model.z_size)), jnp.zeros((1, 1, model.action_size)))
  m = config.mdn
  schedule = optax.exponential_decay(m.learning_rate, transition_steps=1, decay_rate=m.lr_decay)
  tx = optax.chain(optax.clip_by_global_norm(m.grad_clip), optax.adam(schedule))
  return train_state.TrainState.create(apply_fn=model.apply, params=params['params'], tx=tx)


def chunk_loss(params, carry, batch, apply_fn, done_weight: float, done_positive_weight: float):
  """Loss of one chunk; batch fields [B, L, ...], z and z_next already sampled."""
  carry, mixture = apply_fn({'params': params}, batch['z'], batch['actions'], batch['restarts'],
                            carry)
  mask = batch['has_next']
  log_prob = mixture_log_prob(mixture, batch['z_next'])  # [B, L, z]
  nll = -jnp.sum(log_prob * mask[..., None]) / (jnp.maximum(jnp.sum(mask), 1.0) * log_prob.shape[-1])
  metrics = {'nll': nll}
  loss = nll
  if mixture.done_logits is not None:
    terminals = batch['terminals']
    # Terminal steps weighted (paper: 10x): M then declares a death (logit > 0) once its
    # probability passes 1 / (1 + weight), so rare deaths still end the thresholded dream.
    bce = jnp.mean((1.0 + (done_positive_weight - 1.0) * terminals) *
                   optax.sigmoid_binary_cross_entropy(mixture.done_logits, terminals))
    metrics['done_bce'] = bce  # As weighted in the loss.
    loss = loss + done_weight * bce
  if mixture.rewards is not None:
    reward_mse = jnp.mean(jnp.square(mixture.rewards - batch['rewards']))
    metrics['reward_mse'] = reward_mse
    loss = loss + reward_mse
  metrics['loss'] = loss
  return loss, (metrics, carry)


def train_epoch(state: train_state.TrainState, data: Sequences, index: jax.Array, key: jax.Array,
                done_weight: float, done_positive_weight: float, hidden_size: int,
                sample_z: bool = True) -> tuple[train_state.TrainState, dict[str, jax.Array]]:
  """One epoch: resample z (or, without `sample_z`, z = mu), then one Adam step per chunk of
  `index` [B, C, L] in lax.scan."""
  z = data.mu
  if sample_z:
    z = z + jnp.exp(0.5 * data.logvar) * jax.random.normal(key, data.mu.shape)
  last = z.shape[0] - 1

  def chunk_step(carry, chunk_index):  # chunk_index [B, L]
    state, lstm = carry
    batch = {'z': z[chunk_index], 'z_next': z[jnp.minimum(chunk_index + 1, last)],
             'actions': data.actions[chunk_index], 'restarts': data.restarts[chunk_index],
             'has_next': data.has_next[chunk_index], 'terminals': data.terminals[chunk_index],
             'rewards': data.rewards[chunk_index]}
    loss_fn = functools.partial(chunk_loss, apply_fn=state.apply_fn, done_weight=done_weight,
                                done_positive_weight=done_positive_weight)
    grads, (metrics, lstm) = jax.grad(loss_fn, has_aux=True)(state.params, lstm, batch)
    return (state.apply_gradients(grads=grads), jax.lax.stop_gradient(lstm)), metrics

  lstm = (jnp.zeros((index.shape[0], hidden_size)),) * 2
  (state, _), metrics = jax.lax.scan(chunk_step, (state, lstm), jnp.swapaxes(index, 0, 1))
  return state, jax.tree.map(jnp.mean, metrics)


def jit_train_epoch(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """`train_epoch` jitted for this config: streams sharded on 'data', state and dataset
  replicated."""
  streams = training.data_sharding(mesh, config.mdn.num_streams)
  replicated = training.replicated(mesh)
  m = config.mdn
  epoch = functools.partial(train_epoch, done_weight=m.done_weight,
                            done_positive_weight=m.done_positive_weight,
                            hidden_size=m.model.hidden_size, sample_z=m.sample_z)
  return jax.jit(epoch, in_shardings=(replicated, replicated, streams, replicated),
                 out_shardings=(replicated, replicated), donate_argnums=0)


@holds_workdir_lock
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0
                       ) -> dict[str, float]:
  """Trains M for `mdn.num_epochs` epochs on the workdir's latents (those of rounds
  0..round_index of the iterative procedure), resuming at an epoch boundary. Returns the last
  epoch's metrics ({'step': epochs, 'mdn/loss', 'mdn/nll', ...})."""
  out = Workdir(workdir).mdn(round_index)
  host_data, lengths = load_sequences(config, workdir, round_index)
  manager = stage_checkpoints(config, workdir, 'mdn', round_index)
  mesh = training.make_mesh(config.mesh.data)
  data = jax.device_put(host_data, training.replicated(mesh))
  state = jax.device_put(create_train_state(config, jax.random.PRNGKey(config.seed)),
                         training.replicated(mesh))
  epoch = 0
  restored = training.restore_newest(manager,
                                     ocp.args.StandardRestore(training.abstract(state)))
  if restored is not None:
    epoch, state = restored

  step_fn = jit_train_epoch(config, mesh)
  streams = training.data_sharding(mesh, config.mdn.num_streams)
  log = training.MetricsLog(out)
  progress = tqdm.trange(epoch, config.mdn.num_epochs, initial=epoch, total=config.mdn.num_epochs,
                         desc='train M', unit='epoch')
  try:
    for epoch in progress:
      index = epoch_index(lengths, config.mdn.num_streams, config.mdn.chunk_length, config.seed,
                          epoch)
      key = jax.random.fold_in(jax.random.PRNGKey(config.seed), epoch)
      state, metrics = step_fn(state, data, jax.device_put(index, streams), key)
      metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
      if not np.isfinite(metrics['loss']):
        raise FloatingPointError(f'M diverged in epoch {epoch + 1}: {metrics}. Try a lower '
                                 'mdn.learning_rate.')
      training.check_finite(state, 'M', epoch + 1, 'mdn.learning_rate')
      log.write(epoch + 1, {f'mdn/{k}': v for k, v in metrics.items()})
      progress.set_postfix({k: f'{v:.3f}' for k, v in metrics.items()})
      manager.save(epoch + 1, args=ocp.args.StandardSave(state))
  finally:
    manager.wait_until_finished()
  log.close()
  return training.last_metrics(out)


def restore_params(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0) -> Any:
  """M's parameters from the final checkpoint of `train_and_evaluate` (refuses partial training)."""
  check_trained(config, workdir, 'mdn', round_index)
  abstract = jax.eval_shape(functools.partial(create_train_state, config), jax.random.PRNGKey(0))
  return training.restore_final(
      Workdir(workdir).checkpoints('mdn', round_index),
      fingerprint(config, 'mdn', round_index, checkpoints=True), config.mdn.num_epochs, 'M',
      'mdn.num_epochs', producing_stage('mdn', round_index),
      ocp.args.StandardRestore(training.abstract(abstract))).params
