"""Per-frame reconstruction quality of videos in [-0.5, 0.5]: PSNR and SSIM (dm-pix).

Frames are shifted to [0, 1] (reconstructions clipped to it, as a decoded video is shown), each
frame is scored on its own, and a video's score is the mean over its frames.
"""

from __future__ import annotations

import dm_pix
import jax
import jax.numpy as jnp


def _frames(videos: jax.Array) -> jax.Array:
  """[B, T, H, W, C] in [-0.5, 0.5] -> [B*T, H, W, C] in [0, 1]."""
  if videos.ndim != 5:
    raise ValueError(f'Expected videos [B, T, H, W, C], got shape {videos.shape}.')
  return jnp.clip(videos.reshape(-1, *videos.shape[2:]) + 0.5, 0.0, 1.0)


def psnr(videos: jax.Array, reconstructions: jax.Array, per_frame: bool = False) -> jax.Array:
  """[B] mean per-frame PSNR in dB (peak 1 on the [0, 1] scale); [B, T] if per_frame."""
  values = dm_pix.psnr(_frames(videos), _frames(reconstructions)).reshape(videos.shape[:2])
  return values if per_frame else values.mean(axis=1)


def ssim(videos: jax.Array, reconstructions: jax.Array, per_frame: bool = False) -> jax.Array:
  """[B] mean per-frame SSIM (11x11 Gaussian window, sigma 1.5); [B, T] if per_frame."""
  values = dm_pix.ssim(_frames(videos), _frames(reconstructions), max_val=1.0)
  values = values.reshape(videos.shape[:2])
  return values if per_frame else values.mean(axis=1)
