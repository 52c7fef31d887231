"""Frames as pictures: uint8 conversion, strips of frames, PNG and GIF files."""

from __future__ import annotations

import numpy as np
from PIL import Image


def to_uint8(frames) -> np.ndarray:
  """Frames as uint8 (floats in [0, 1] are scaled and rounded)."""
  frames = np.asarray(frames)
  return frames if frames.dtype == np.uint8 else np.round(np.clip(frames, 0, 1) * 255).astype(np.uint8)


def image_strip(rows: list[np.ndarray]) -> np.ndarray:
  """Rows of frames [N, H, W, 3] (uint8, or float in [0, 1]) -> one [rows*H, N*W, 3] uint8 image."""
  return np.concatenate([np.concatenate(list(to_uint8(r)), axis=1) for r in rows], axis=0)


def save_png(path: str, image: np.ndarray, scale: int = 2) -> None:
  height, width = image.shape[:2]
  Image.fromarray(image).resize((width * scale, height * scale), Image.NEAREST).save(path)


def save_gif(path: str, frames: list[np.ndarray], scale: int = 2, fps: int = 8) -> None:
  """uint8 images [H, W, 3], one per frame, as a looping GIF."""
  images = [Image.fromarray(f).resize((f.shape[1] * scale, f.shape[0] * scale), Image.NEAREST)
            for f in frames]
  images[0].save(path, save_all=True, append_images=images[1:], duration=1000 // fps, loop=0)
