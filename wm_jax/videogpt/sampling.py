"""Sampling VideoGPT's prior: videos drawn (unconditionally, or given a clip's actions and
frames), futures predicted from context frames and scored against the truth and against
repeating the last context frame, and the GIF/PNG files that show them."""

from __future__ import annotations

import functools
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from wm_jax.common import images
from wm_jax.data import video as video_lib
from wm_jax.metrics import image_quality
from wm_jax.videogpt import vqvae as vqvae_lib
from wm_jax.videogpt.latent_prior import (Prior, clip_batches, codebook_vectors, encode,
                                          first_batches)
from wm_jax.videogpt.models.video_gpt import sample_codes
from wm_jax.videogpt.models.video_vqvae import VideoVQVAE


@functools.partial(jax.jit, static_argnames=('prior', 'prefix_steps', 'temperature', 'top_k'))
def generate(prior: Prior, params, vqvae_variables, batch: dict[str, jax.Array], key: jax.Array,
             prefix_steps: int = 0, temperature: float = 1.0, top_k: int = 0) -> jax.Array:
  """Videos [B, T, H, W, C] in [-0.5, 0.5] sampled by the prior (conditioned on the batch's
  actions and frames where it is conditional); decoded by the VQ-VAE.

  With `prefix_steps` > 0 the first prefix_steps latent steps are the codes of the context (the
  first prefix_steps * frames_per_step frames) and only the rest is drawn. The encoder is not
  causal in time (its convolutions and attention span neighbouring frames), so the context is
  encoded with the frames after it replaced by its last frame: no code reads a future frame.
  A VQ-VAE with `reference_frame` r decodes relative to the batch's frame r (in the context:
  `check_settings`).
  """
  vqvae = prior.vqvae.model
  c, frames = prior.conditions(batch)
  videos = batch['video']
  batch_size = videos.shape[0]
  prefix = None
  if prefix_steps:
    context = prefix_steps * prior.frames_per_step
    held = jnp.repeat(videos[:, context - 1:context], videos.shape[1] - context, axis=1)
    codes = encode(vqvae, vqvae_variables, jnp.concatenate([videos[:, :context], held], axis=1))
    prefix = codes[:, :prefix_steps].reshape(batch_size, -1)
  codes = sample_codes(prior.model, params, codebook_vectors(vqvae_variables), key, batch_size,
                       c, frames, prefix, temperature, top_k)
  reference = None
  if vqvae.reference_frame is not None:
    reference = video_lib.to_model_range(videos[:, vqvae.reference_frame])
  return jnp.clip(vqvae.apply(vqvae_variables, codes, reference,
                              method=VideoVQVAE.decode_codes), -0.5, 0.5)


def sample_videos(prior: Prior, params, batches, key: jax.Array, prefix_steps: int,
                  temperature: float, top_k: int, num_samples: int = 1) -> np.ndarray:
  """uint8 videos [N, T, H, W, C] generated for each batch of `batches` (the conditioning).

  With `num_samples` > 1 each video is the pixel mean of that many draws (draw k of batch i
  with fold_in(key, k * len(batches) + i)): the Monte-Carlo estimate of the prior's expected
  video, the prediction with the least expected squared error under the prior.
  """
  videos = []
  for i, batch in enumerate(batches):
    total = 0.0  # A running sum: one draw on the device at a time.
    for k in range(num_samples):
      total = total + generate(prior, params, prior.vqvae.variables, batch,
                               jax.random.fold_in(key, k * len(batches) + i), prefix_steps,
                               temperature, top_k)
    videos.append(total / num_samples)
  return np.round((np.concatenate(jax.device_get(videos)) + 0.5) * 255).astype(np.uint8)


def prediction_scores(truth: np.ndarray, predicted: np.ndarray, reconstructed: np.ndarray,
                      context_frames: int, horizons) -> dict[str, dict[str, float]]:
  """Per horizon h (frame context_frames + h - 1), mean PSNR/SSIM over clips of the predicted
  frames, of the last context frame repeated (the baseline) and of the VQ-VAE's
  reconstruction of the true clip (the ceiling), all against the true frames (uint8
  [N, T, H, W, C])."""
  to_range = lambda v: jnp.asarray(v, jnp.float32) / 255.0 - 0.5
  copy = np.repeat(truth[:, context_frames - 1:context_frames], truth.shape[1], axis=1)
  scores = {}
  for name, frames in (('prediction', predicted), ('copy_last', copy),
                       ('reconstruction', reconstructed)):
    psnr = np.asarray(image_quality.psnr(to_range(truth), to_range(frames), per_frame=True))
    ssim = np.asarray(image_quality.ssim(to_range(truth), to_range(frames), per_frame=True))
    for h in horizons:
      frame = context_frames + h - 1
      scores.setdefault(f'horizon_{h}', {}).update(
          {f'{name}_psnr': float(psnr[:, frame].mean()),
           f'{name}_ssim': float(ssim[:, frame].mean())})
  return scores


def sample_and_score(config, prior: Prior, params, workdir: str, log,
                      step: int) -> dict[str, Any]:
  """Samples (FVD against test clips) and, for world models, scored predictions.
  'sampling_seconds' includes compiling the sampler."""
  s, p, e = config.samples, config.predict, config.eval
  vqvae, results = prior.vqvae, {}
  sample_key, predict_key = jax.random.split(jax.random.PRNGKey(config.seed + 1))
  if s.num_videos:
    batches = first_batches(clip_batches(config, vqvae, 'test', e.batch_size),
                            -(-s.num_videos // e.batch_size))
    start = time.perf_counter()
    samples = sample_videos(prior, params, batches, sample_key, 0, s.temperature,
                            s.top_k)[:s.num_videos]
    results['sampling_seconds'] = round(time.perf_counter() - start, 1)
    real = np.concatenate([b['video'] for b in batches])[:s.num_videos]
    strip = images.save_videos(workdir, 'samples', [samples[:8]])
    log.image('samples', strip, step)
    if e.fvd_trials:
      results.update({f'sample_{k}': v for k, v in vqvae_lib.reconstruction_fvd(
          real, samples, e.fvd_trials, e.fvd_videos, config.seed).items()})
  if p.context_frames:
    batches = first_batches(clip_batches(config, vqvae, 'test', e.batch_size),
                            p.num_clips // e.batch_size)
    predicted = sample_videos(prior, params, batches, predict_key,
                              p.context_frames // prior.frames_per_step, p.temperature, p.top_k,
                              p.num_samples)
    truth = np.concatenate([b['video'] for b in batches])
    reconstructed = np.concatenate([jax.device_get(vqvae_lib.reconstruct(
        vqvae.model.apply, vqvae.variables, b['video'])['reconstructions']) for b in batches])
    reconstructed = np.round((reconstructed + 0.5) * 255).astype(np.uint8)
    results['prediction'] = prediction_scores(truth, predicted, reconstructed, p.context_frames,
                                              p.horizons)
    results['prediction_clips'] = len(truth)
    strip = images.save_videos(workdir, 'predictions', [truth[:4], predicted[:4]])
    log.image('truth_over_predictions', strip, step)
  return results
