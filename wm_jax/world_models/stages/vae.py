"""Training V (the ConvVAE) on stored rollout frames, and encoding the rollouts with it.

`train_and_evaluate(config, workdir)` trains with one jitted `train_step(state, frames)`; every
`vae.checkpoint_every` steps an orbax checkpoint stores the TrainState (params, Adam state,
step, RNG key) and the grain iterator's position, so a killed run resumes from its latest
checkpoint and ends exactly where an uninterrupted run would. Outputs under `workdir/vae/`:
checkpoints/, tensorboard/ (scalars and reconstruction strips, written without TensorFlow)
and reconstructions.png (originals above reconstructions).

`encode_dataset(config, workdir)` stores per episode the series of mu and log-variance (M
resamples z from them every epoch) with the actions, rewards and done flags, plus
`initial_latents.npz` (first-frame mu and log-variance, from which the dream starts).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from flax.training import train_state

from wm_jax.common.config import check_same, fingerprint
from wm_jax.data import episodes as episodes_lib
from wm_jax.data.collect import rollouts_path
from wm_jax.world_models.frames import check_frames, frame_batches
from wm_jax.world_models.models.conv_vae import ConvVAE, vae_loss
from wm_jax.common import images, training

# Keys that may change between a run and its resumption without changing what it computes.
RESUMABLE_KEYS = ('vae.num_steps', 'vae.log_every', 'vae.checkpoint_every', 'vae.eval_every')


class TrainState(train_state.TrainState):
  rng: jax.Array  # raw uint32[2] key; step t uses fold_in(rng, t)


def make_model(config: ml_collections.ConfigDict) -> ConvVAE:
  return ConvVAE(z_size=config.vae.z_size, dtype=jnp.dtype(config.vae.dtype),
                 transposed_conv=config.vae.transposed_conv)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
  model = make_model(config)
  init_rng, state_rng = jax.random.split(rng)
  params = model.init(init_rng, jnp.zeros((1, 64, 64, 3), jnp.uint8), init_rng)['params']
  return TrainState.create(apply_fn=model.apply, params=params,
                           tx=optax.adam(config.vae.learning_rate), rng=state_rng)


def train_step(state: TrainState, frames: jax.Array, kl_tolerance: float
               ) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on a batch of frames [B, 64, 64, 3] (uint8)."""
  key = jax.random.fold_in(state.rng, state.step)

  def loss_fn(params):
    reconstruction, mu, logvar = state.apply_fn({'params': params}, frames, key)
    return vae_loss(frames, reconstruction, mu, logvar, kl_tolerance)

  grads, metrics = jax.grad(loss_fn, has_aux=True)(state.params)
  return state.apply_gradients(grads=grads), metrics


def jit_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """`train_step` jitted once for this config: state replicated, batch sharded on 'data'."""
  batch = training.data_sharding(mesh, config.vae.batch_size)
  replicated = training.replicated(mesh)
  # chex counts traces per function source; clearing lets a process (a notebook, the resume
  # test) run the trainer again while each run still asserts that its step compiles once.
  chex.clear_trace_counter()

  @chex.assert_max_traces(n=1)
  def step(state, frames):
    return train_step(state, frames, config.vae.kl_tolerance)

  return jax.jit(step, in_shardings=(replicated, batch), out_shardings=(replicated, replicated),
                 donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(apply_fn, params, frames: jax.Array) -> jax.Array:
  """Decodes the posterior means: [B, 64, 64, 3] -> [B, 64, 64, 3] in [0, 1]."""
  mu, _ = apply_fn({'params': params}, frames, method=ConvVAE.encode)
  return apply_fn({'params': params}, mu, method=ConvVAE.decode)


def _fixed_frames(episodes, count: int) -> np.ndarray:
  """Mid-episode frames of the first `count` episodes: the same pictures at every evaluation."""
  picks = []
  for i in range(min(count, len(episodes))):
    frames = episodes[i]['frames']
    picks.append(frames[len(frames) // 2])
  return np.stack(picks)


def vae_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  meta = fingerprint(config, ('env', 'collect', 'vae'),
                     ignore=('collect.episodes_per_chunk',) + RESUMABLE_KEYS)
  meta['seed'] = config.seed
  return meta


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> TrainState:
  """Trains V for `config.vae.num_steps` steps on the rollouts in `workdir`, resuming if possible."""
  workdir = os.path.abspath(workdir)
  out = os.path.join(workdir, 'vae')
  os.makedirs(out, exist_ok=True)
  episodes = episodes_lib.open_episodes(rollouts_path(workdir), 'rollout')
  c = config.vae
  mesh = training.make_mesh(config.mesh.data)
  batch_sharding = training.data_sharding(mesh, c.batch_size)

  state = jax.device_put(create_train_state(config, jax.random.PRNGKey(config.seed)),
                         training.replicated(mesh))
  batches = frame_batches(episodes, c.batch_size, seed=config.seed, shuffle_window=c.shuffle_window,
                          max_episode_length=config.collect.max_steps)
  iterator = iter(batches)
  manager = training.checkpoint_manager(os.path.join(out, 'checkpoints'), vae_fingerprint(config))
  state = training.restore_latest(manager, state, iterator)

  step_fn = jit_train_step(config, mesh)
  preview = _fixed_frames(episodes, 8)
  log = training.MetricsLog(out)
  start_step = int(state.step)
  progress = tqdm.tqdm(initial=start_step, total=c.num_steps, desc='train V', unit='step')
  window = training.StepWindow('V', 'vae.learning_rate')
  for step in range(start_step + 1, c.num_steps + 1):
    frames = next(iterator)
    check_frames(frames)
    state, metrics = step_fn(state, jax.device_put(frames, batch_sharding))
    window.add(metrics, len(frames))
    if step % c.log_every == 0 or step == c.num_steps:
      means, images_per_s = window.flush(step)
      log.write(step, {**{f'vae/{k}': v for k, v in means.items()}, 'vae/images_per_s': images_per_s})
      progress.set_postfix(loss=f'{means["loss"]:.1f}', kl=f'{means["kl"]:.1f}',
                           img_per_s=f'{images_per_s:.0f}')
    if step % c.eval_every == 0 or step == c.num_steps:
      reconstructions = reconstruct(state.apply_fn, state.params, preview)
      strip = images.image_strip([preview, np.asarray(reconstructions)])
      log.image('vae/originals_over_reconstructions', strip, step)
      images.save_png(os.path.join(out, 'reconstructions.png'), strip)
    if step % c.checkpoint_every == 0 or step == c.num_steps:
      training.save(manager, step, state, iterator)
    progress.update(1)
  progress.close()
  manager.wait_until_finished()
  log.close()
  return state


def restore_params(config: ml_collections.ConfigDict, workdir: str) -> Any:
  """V's parameters from the final checkpoint of `train_and_evaluate` (refuses partial training)."""
  abstract = jax.eval_shape(functools.partial(create_train_state, config), jax.random.PRNGKey(0))
  restored = training.restore_final(
      os.path.join(os.path.abspath(workdir), 'vae', 'checkpoints'), vae_fingerprint(config),
      config.vae.num_steps, 'V', 'vae.num_steps', 'vae', ocp.args.Composite(
          state=ocp.args.StandardRestore(training.abstract(abstract))))
  return restored['state'].params


def latents_path(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'data', 'latents')


def initial_latents_path(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'data', 'initial_latents.npz')


def encode_dataset(config: ml_collections.ConfigDict, workdir: str) -> str:
  """Encodes every rollout episode with the trained V; skips if already done. Returns the path."""
  path = latents_path(workdir)
  meta = vae_fingerprint(config)
  meta['vae.num_steps'] = config.vae.num_steps
  if episodes_lib.is_complete(path) and os.path.exists(initial_latents_path(workdir)):
    check_same(episodes_lib.read_metadata(path), meta, f'The latent dataset in {path}')
    return path

  rollouts = episodes_lib.open_episodes(rollouts_path(workdir), 'rollout')
  params = restore_params(config, workdir)
  model = make_model(config)
  chunk = config.encode.batch_size

  @jax.jit
  def encode(frames):
    return model.apply({'params': params}, frames, method=ConvVAE.encode)

  def encode_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    # Fixed-size chunks (the last one padded) keep `encode` at one compiled shape.
    padded = np.concatenate([frames, np.zeros((-len(frames) % chunk, *frames.shape[1:]),
                                              frames.dtype)])
    mu, logvar = zip(*(encode(padded[i:i + chunk]) for i in range(0, len(padded), chunk)))
    return np.concatenate(mu)[:len(frames)], np.concatenate(logvar)[:len(frames)]

  first_mu, first_logvar = [], []

  def latent_episodes():
    # Episodes are encoded in groups of at least `chunk` frames, so short episodes share calls.
    group = []
    for i in tqdm.trange(len(rollouts), desc='encode', unit='episode'):
      group.append(rollouts[i])
      if sum(len(e['frames']) for e in group) < chunk and i + 1 < len(rollouts):
        continue
      mu, logvar = encode_frames(np.concatenate([e['frames'] for e in group]))
      splits = np.cumsum([len(e['frames']) for e in group])[:-1]
      for episode, mu_e, logvar_e in zip(group, np.split(mu, splits), np.split(logvar, splits)):
        first_mu.append(mu_e[0])
        first_logvar.append(logvar_e[0])
        yield {'mu': mu_e, 'logvar': logvar_e, **{k: episode[k] for k in rollout_fields(episode)}}
      group = []

  sample = rollouts[0]
  z = config.vae.z_size
  spec = {'mu': ((z,), np.float32), 'logvar': ((z,), np.float32),
          **{k: (sample[k].shape[1:], sample[k].dtype) for k in rollout_fields(sample)}}
  episodes_lib.write_episodes(path, spec, latent_episodes(), meta)
  temporary = initial_latents_path(workdir) + '.tmp.npz'
  np.savez(temporary, mu=np.stack(first_mu), logvar=np.stack(first_logvar))
  os.replace(temporary, initial_latents_path(workdir))
  return path


def rollout_fields(episode) -> list[str]:
  """The per-step fields of a rollout episode that the latent dataset carries over."""
  return [k for k in episode if k != 'frames']
