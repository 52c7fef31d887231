"""Training VideoGPT's prior (stage 2) over a trained VQ-VAE's codes, and scoring it.

`train_and_evaluate(config, workdir)`:
- loads the VQ-VAE run in `vqvae.workdir` (its configuration from its checkpoints' metadata, its
  latest checkpoint) and keeps it frozen;
- trains with one jitted `train_step(state, vqvae_variables, batch)`: the uint8 clips are
  encoded to codes on device, and the prior is fitted by teacher-forced cross-entropy over all
  L = T'H'W' codes (Adam, cosine decay to 0, gradient clipping), the batch placed with a
  NamedSharding over the mesh's 'data' axis;
- every `train.eval_every` steps: bits/dim, the test cross-entropy in bits per latent code, on
  the first `eval.num_clips` test clips;
- at the end (`sampling.py`): `samples.num_videos` sampled videos (samples.gif, samples.png;
  conditioned on test clips when the prior is conditional or the VQ-VAE decodes relative to a
  reference frame), their FVD against test clips when `eval.fvd_trials` > 0, and, with
  `predict.context_frames` > 0, future frames predicted from context frames and the clip's
  actions (greedy, one draw, or the pixel mean of `predict.num_samples` draws), scored by
  PSNR/SSIM per horizon against the truth and against repeating the last context frame
  (predictions.png).
Orbax checkpoints hold the TrainState and the grain iterator's position, so a killed run resumes
and ends where an uninterrupted run would. results.json holds the final scores.
"""

from __future__ import annotations

import functools
import math
import os
from typing import Any

import grain
import jax
import ml_collections
import numpy as np
import optax
from tqdm import auto as tqdm
from flax.training import train_state

from wm_jax.common import distributed, training
from wm_jax.common.config import check_keys, check_ranges, fingerprint
from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.videogpt import sampling
from wm_jax.videogpt.configs import videogpt_moving_digits
from wm_jax.videogpt.latent_prior import (FrozenVQVAE, Prior, check_batch, clip_batches,
                                          first_batches)
from wm_jax.videogpt.vqvae import check_eval_clips

# Keys that may change between a run and its resumption without changing what it trains.
RESUMABLE_KEYS = ('train.log_every', 'train.eval_every', 'train.checkpoint_every',
                  'model.attention_impl')  # Both implementations give the same numbers.
# Keys added after runs were written without them, at the value those runs used (`fingerprint`).
ADDED_LATER = {'model.dtype': 'float32'}
# Config values refused before anything runs (`check_ranges`); the clip shape is the VQ-VAE's.
RANGES = {'data.batch_size': '>= 1', 'data.action_dim': '>= 0', 'model.width': '>= 1',
          'model.num_heads': '>= 1', 'model.num_layers': '>= 1', 'model.dropout': '>= 0',
          'model.attention_dropout': '>= 0', 'train.learning_rate': '> 0',
          'train.grad_clip': '>= 0', 'train.num_steps': '>= 1', 'train.log_every': '>= 1',
          'train.eval_every': '>= 1', 'train.checkpoint_every': '>= 1',
          'eval.num_clips': '>= 1', 'eval.batch_size': '>= 1', 'eval.fvd_trials': '>= 0',
          'samples.num_videos': '>= 0', 'samples.temperature': '> 0', 'samples.top_k': '>= 0',
          'predict.context_frames': '>= 0', 'predict.temperature': '> 0',
          'predict.top_k': '>= 0', 'predict.num_samples': '>= 1'}


class TrainState(train_state.TrainState):
  rng: jax.Array  # raw uint32[2] key; step t drops out with fold_in(rng, t)


def create_train_state(config: ml_collections.ConfigDict, prior: Prior, batch,
                       rng: jax.Array) -> TrainState:
  init_rng, state_rng = jax.random.split(rng)
  t = config.train
  schedule = optax.cosine_decay_schedule(t.learning_rate, t.num_steps)
  tx = optax.chain(optax.clip_by_global_norm(t.grad_clip) if t.grad_clip else optax.identity(),
                   optax.adam(schedule))
  return TrainState.create(apply_fn=prior.model.apply, params=prior.init(init_rng, batch), tx=tx,
                           rng=state_rng)


def train_step(state: TrainState, vqvae_variables, batch: dict[str, jax.Array],
               prior: Prior) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step of the prior on a batch {'video': uint8 [B, T, H, W, C], 'actions'?}."""
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.grad(prior.loss, has_aux=True)
  grads, metrics = grad_fn(state.params, vqvae_variables, batch, True, dropout_rng)
  metrics['grad_norm'] = optax.tree.norm(grads)
  return state.apply_gradients(grads=grads), metrics


def jit_train_step(prior: Prior, mesh: jax.sharding.Mesh, batch_size: int):
  """`train_step` jitted for this prior: state and VQ-VAE replicated, the batch sharded on
  'data'."""
  replicated, batch = training.replicated(mesh), training.data_sharding(mesh, batch_size)
  return jax.jit(functools.partial(train_step, prior=prior),
                 in_shardings=(replicated, replicated, batch),
                 out_shardings=(replicated, replicated), donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _eval_loss(prior: Prior, params, vqvae_variables, batch) -> jax.Array:
  return prior.loss(params, vqvae_variables, batch, False)[0]


def bits_per_dim(prior: Prior, params, batches) -> float:
  """Mean cross-entropy over all codes of the clips in `batches`, in bits per code."""
  if not batches:
    raise ValueError('No evaluation clips: the test split is empty or shorter than one batch.')
  losses = [_eval_loss(prior, params, prior.vqvae.variables, b) for b in batches]
  return float(np.mean(jax.device_get(losses)) / np.log(2.0))


def _evaluate_and_log(state: TrainState, step: int, prior: Prior, batches,
                      log: training.MetricsLog) -> float:
  """`evaluate(state, step)` for `fit`: the test bits/dim, logged."""
  test_bits = bits_per_dim(prior, state.params, batches)
  log.write(step, {'eval/bits_per_dim': test_bits})
  tqdm.tqdm.write(f'step {step}: test bits/dim {test_bits:.4f}')
  return test_bits


def prior_fingerprint(config: ml_collections.ConfigDict, vqvae: FrozenVQVAE) -> dict[str, Any]:
  meta = fingerprint(config, ('data', 'model', 'train'), ignore=RESUMABLE_KEYS,
                     added_later=ADDED_LATER)
  meta.update({'seed': config.seed, **{f'vqvae.{k}': v for k, v in vqvae.fingerprint.items()}})
  return meta


@holds_workdir_lock
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the prior for `train.num_steps` steps (resuming from `workdir` if possible), then
  samples and scores it; returns the results, also written to `workdir/results.json` (last).
  Unknown config keys, values out of range (RANGES), settings that cannot work, an unfinished
  VQ-VAE run and a test split too short for the evaluation, samples and predictions are refused
  before training."""
  check_keys(config, videogpt_moving_digits.get_config(),
             'wm_jax/videogpt/configs/videogpt_moving_digits.py')
  check_ranges(config, RANGES)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  d, t, e, s, p = config.data, config.train, config.eval, config.samples, config.predict
  vqvae = FrozenVQVAE(config.vqvae.workdir)
  prior = Prior(config, vqvae)
  check_settings(config, prior)
  mesh = training.make_mesh(config.mesh.data)
  batch_sharding = training.data_sharding(mesh, d.batch_size)
  iterator = iter(clip_batches(config, vqvae, 'train',
                               distributed.local_batch_size(d.batch_size, 'data.batch_size'),
                               grain.sharding.ShardByJaxProcess()))
  # Every test batch the run reads (sampling.py reads its own again), read before training.
  eval_count = e.num_clips // e.batch_size
  needed = max(eval_count, -(-s.num_videos // e.batch_size),
               p.num_clips // e.batch_size if p.context_frames else 0)
  test_batches = first_batches(
      clip_batches(config, vqvae, 'test', e.batch_size), needed,
      f'The test split of data.name={d.name!r} (data.data_dir={d.data_dir!r})')[:eval_count]
  check_batch(test_batches[0], vqvae)

  state = create_train_state(config, prior, test_batches[0], jax.random.PRNGKey(config.seed))
  state = jax.device_put(state, training.replicated(mesh))
  vqvae_variables = jax.device_put(vqvae.variables, training.replicated(mesh))
  manager = training.checkpoint_manager(os.path.join(workdir, 'checkpoints'),
                                        prior_fingerprint(config, vqvae))
  state = training.restore_latest(manager, state, iterator)

  jitted = jit_train_step(prior, mesh, d.batch_size)

  def place(batch):
    check_batch(batch, vqvae)
    return jax.tree.map(lambda rows: distributed.global_batch(batch_sharding, rows), batch)

  log = training.MetricsLog(workdir)
  state, test_bits = training.fit(
      state, lambda state, batch: jitted(state, vqvae_variables, batch), iterator, manager, log,
      num_steps=t.num_steps, log_every=t.log_every, eval_every=t.eval_every,
      checkpoint_every=t.checkpoint_every, place=place, what='VideoGPT prior',
      learning_rate_key='train.learning_rate', rate_name='tokens_per_s',
      rate_scale=math.prod(vqvae.latent_shape), show=('bits_per_dim',),
      evaluate=functools.partial(_evaluate_and_log, prior=prior, batches=test_batches, log=log))
  if test_bits is None:  # Already trained: score the final checkpoint.
    test_bits = bits_per_dim(prior, state.params, test_batches)
  results: dict[str, Any] = {'step': int(state.step), 'bits_per_dim': test_bits,
                             'eval_clips': eval_count * e.batch_size,
                             'vqvae_step': vqvae.step}
  results.update(sampling.sample_and_score(config, prior, state.params, workdir, log,
                                           int(state.step)))
  log.close()
  # Last and atomically: results.json means every output is there.
  training.write_results(os.path.join(workdir, 'results.json'), results)
  return results


def check_settings(config: ml_collections.ConfigDict, prior: Prior) -> None:
  """Raises a ValueError naming the key of a sampling or prediction setting that cannot work, so
  that it fails before training rather than after."""
  s, p, e = config.samples, config.predict, config.eval
  check_eval_clips(e)
  if e.fvd_trials and not 2 <= e.fvd_videos <= s.num_videos:
    raise ValueError(f'eval.fvd_videos={e.fvd_videos} must lie in [2, samples.num_videos='
                     f'{s.num_videos}]: FVD compares that many samples with as many test clips.')
  reference = prior.vqvae.model.reference_frame
  if p.context_frames and reference is not None and reference >= p.context_frames:
    raise ValueError(f'The VQ-VAE decodes relative to frame {reference} (its '
                     f'model.reference_frame), which is not among the first '
                     f'predict.context_frames={p.context_frames} frames (the context): '
                     'predictions would see the future.')
  if p.context_frames:
    frames = prior.vqvae.video_shape[0]
    if p.context_frames % prior.frames_per_step or p.context_frames < prior.cond_frames:
      raise ValueError(f'predict.context_frames={p.context_frames} must be a multiple of the '
                       f'{prior.frames_per_step} frames per latent step and >= model.cond_frames='
                       f'{prior.cond_frames}.')
    if not p.horizons or p.context_frames + max(p.horizons) > frames or min(p.horizons) < 1:
      raise ValueError(f'predict.horizons={tuple(p.horizons)} must lie in [1, '
                       f'{frames - p.context_frames}]: the clip has {frames} frames, '
                       f'{p.context_frames} of them context.')
    if p.num_samples > 1 and p.top_k == 1:
      raise ValueError(f'predict.num_samples={p.num_samples} must be 1, or more with sampling '
                       f'(predict.top_k={p.top_k}; 1 is greedy, whose draws are all the same).')
    if p.num_clips < e.batch_size:
      raise ValueError(f'predict.num_clips={p.num_clips} must be at least eval.batch_size='
                       f'{e.batch_size}.')


