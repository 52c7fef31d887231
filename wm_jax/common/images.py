"""Frames as pictures: uint8 conversion, strips of frames, PNG and GIF files."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image

from wm_jax.common import distributed


def to_uint8(frames) -> np.ndarray:
  """Frames as uint8 (floats in [0, 1] are scaled and rounded)."""
  frames = np.asarray(frames)
  return frames if frames.dtype == np.uint8 else np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def image_strip(rows: list[np.ndarray]) -> np.ndarray:
  """Rows of frames [N, H, W, 3] (uint8, or float in [0, 1]) -> one [rows*H, N*W, 3] uint8 image."""
  return np.concatenate([np.concatenate(list(to_uint8(r)), axis=1) for r in rows], axis=0)


def save_png(path: str, image: np.ndarray, scale: int = 2) -> None:
  """Writes a uint8 image [H, W, 3] (in a multi-process run, process 0 does)."""
  if not distributed.is_primary():
    return
  height, width = image.shape[:2]
  Image.fromarray(image).resize((width * scale, height * scale), Image.NEAREST).save(path)


def save_gif(path: str, frames: list[np.ndarray], scale: int = 2, fps: int = 8) -> None:
  """uint8 images [H, W, 3], one per frame, as a looping GIF (written by process 0)."""
  if not distributed.is_primary():
    return
  images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
            for f in frames]
  images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)


def save_videos(directory: str, name: str, rows: list[np.ndarray]) -> np.ndarray:
  """Writes uint8 videos [N, T, H, W, C] per row as `name`.gif (each GIF frame: frame t of every
  video, one row per entry of `rows`) and `name`.png (every second frame of each video, the rows'
  videos interleaved); returns the PNG image."""
  rows = [np.repeat(r, 3, axis=-1) if r.shape[-1] == 1 else r for r in rows]
  frames = [image_strip([r[:, t] for r in rows]) for t in range(rows[0].shape[1])]
  save_gif(os.path.join(directory, f'{name}.gif'), frames)
  strip = image_strip([r[i, ::2] for i in range(len(rows[0])) for r in rows])
  save_png(os.path.join(directory, f'{name}.png'), strip)
  return strip
