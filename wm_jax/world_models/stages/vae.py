"""The vae stage: V (the ConvVAE) trained on the workdir's rollout frames.

`train_and_evaluate(config, workdir)` trains with one jitted `train_step(state, frames)` through
`wm_jax.common.training.fit`; every `vae.checkpoint_every` steps an orbax checkpoint stores the
TrainState (params, Adam state, step, RNG key) and the grain iterator's position, so a killed
run resumes from its latest checkpoint and ends exactly where an uninterrupted run would.
Outputs under `vae/`: checkpoints/, tensorboard/ (scalars and reconstruction strips, written
without TensorFlow), metrics.jsonl and reconstructions.png (originals above reconstructions).
"""

from __future__ import annotations

import functools
import os
from typing import Any

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
from flax.training import train_state

from wm_jax.common import distributed, images, training
from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.world_models.frames import check_frames, frame_batches
from wm_jax.world_models.models.conv_vae import ConvVAE, vae_loss
from wm_jax.world_models.workdir import Workdir, check_trained, fingerprint, open_rollouts
from wm_jax.world_models.world import vae_model


class TrainState(train_state.TrainState):
  rng: jax.Array  # raw uint32[2] key; step t uses fold_in(rng, t)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
  model = vae_model(config)
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
  """`train_step` jitted for this config: state replicated, batch sharded on 'data'."""
  batch = training.data_sharding(mesh, config.vae.batch_size)
  replicated = training.replicated(mesh)
  step = functools.partial(train_step, kl_tolerance=config.vae.kl_tolerance)
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


def _show_reconstructions(state: TrainState, step: int, preview: np.ndarray, out: str,
                          log: training.MetricsLog) -> None:
  """`evaluate(state, step)` for `fit`: the preview frames above their reconstructions."""
  strip = images.image_strip([preview, np.asarray(reconstruct(state.apply_fn, state.params,
                                                              preview))])
  log.image('vae/originals_over_reconstructions', strip, step)
  images.save_png(os.path.join(out, 'reconstructions.png'), strip)


@holds_workdir_lock
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains V for `vae.num_steps` steps on the workdir's rollouts, resuming if possible.
  Returns V's last logged metrics ({'step', 'vae/loss', 'vae/kl', ...})."""
  paths, c = Workdir(workdir), config.vae
  episodes = open_rollouts(config, workdir)
  mesh = training.make_mesh(config.mesh.data)
  batch_sharding = training.data_sharding(mesh, c.batch_size)
  state = jax.device_put(create_train_state(config, jax.random.PRNGKey(config.seed)),
                         training.replicated(mesh))
  batches = iter(frame_batches(episodes, distributed.local_batch_size(c.batch_size,
                                                                      'vae.batch_size'),
                               seed=config.seed, shuffle_window=c.shuffle_window,
                               max_episode_length=config.env.max_steps,
                               shard=grain.sharding.ShardByJaxProcess()))
  manager = training.checkpoint_manager(paths.checkpoints('vae'),
                                        fingerprint(config, 'vae', checkpoints=True))
  state = training.restore_latest(manager, state, batches)

  def place(frames):
    check_frames(frames)
    return distributed.global_batch(batch_sharding, frames)

  log = training.MetricsLog(paths.vae)
  training.fit(state, jit_train_step(config, mesh), batches, manager, log,
               num_steps=c.num_steps, log_every=c.log_every, eval_every=c.eval_every,
               checkpoint_every=c.checkpoint_every, place=place, what='V',
               learning_rate_key='vae.learning_rate', prefix='vae', rate_name='images_per_s',
               show=('loss', 'kl'),
               evaluate=functools.partial(_show_reconstructions,
                                          preview=_fixed_frames(episodes, 8), out=paths.vae,
                                          log=log))
  log.close()
  return training.last_metrics(paths.vae)


def restore_params(config: ml_collections.ConfigDict, workdir: str) -> Any:
  """V's parameters from the final checkpoint of `train_and_evaluate` (refuses partial training)."""
  check_trained(config, workdir, 'vae')
  abstract = jax.eval_shape(functools.partial(create_train_state, config), jax.random.PRNGKey(0))
  restored = training.restore_final(
      Workdir(workdir).checkpoints('vae'), fingerprint(config, 'vae', checkpoints=True),
      config.vae.num_steps, 'V', 'vae.num_steps', 'vae', ocp.args.Composite(
          state=ocp.args.StandardRestore(training.abstract(abstract))))
  return restored['state'].params
