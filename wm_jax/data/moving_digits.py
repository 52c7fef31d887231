"""Moving-Digits: a Moving-MNIST-like video dataset generated offline, as a TFDS builder.

Each clip shows 1 or 2 digits (28x28 glyphs) bouncing inside a 64x64 black frame, overlapping by
pixel-wise maximum, as in Moving MNIST (Srivastava et al., 2015). The digits are not MNIST's
(that needs a download): they are rendered from the TrueType fonts that ship inside matplotlib
(21 Latin text fonts: DejaVu, Computer Modern, STIX), then scaled and rotated at random per clip.
Everything is deterministic given the builder config's `seed`: example i of a split comes from
`numpy.random.default_rng((seed, split, i))`.

  import wm_jax.data.moving_digits  # registers 'moving_digits'
  source = tfds.data_source('moving_digits/frames_16', data_dir=...)  # builds on first use
  source[0] -> {'video': uint8 [16, 64, 64, 1], 'digits': int64 [2] (-1: absent),
                'num_digits': int64}

Written as array_record (no TensorFlow needed), frames zlib-compressed (~1 KB per clip).
"""

from __future__ import annotations

import dataclasses
import functools
import os

import matplotlib
import numpy as np
import tensorflow_datasets as tfds
from PIL import Image, ImageDraw, ImageFont

FRAME_SIZE = 64
GLYPH_SIZE = 28
MAX_DIGITS = 2
# matplotlib's fonts with Latin digits (its symbol-only and fallback fonts are left out).
FONTS = (
    'DejaVuSans', 'DejaVuSans-Bold', 'DejaVuSans-Oblique', 'DejaVuSans-BoldOblique',
    'DejaVuSansMono', 'DejaVuSansMono-Bold', 'DejaVuSansMono-Oblique',
    'DejaVuSansMono-BoldOblique', 'DejaVuSerif', 'DejaVuSerif-Bold', 'DejaVuSerif-Italic',
    'DejaVuSerif-BoldItalic', 'STIXGeneral', 'STIXGeneralBol', 'STIXGeneralItalic',
    'STIXGeneralBolIta', 'cmr10', 'cmb10', 'cmss10', 'cmtt10', 'cmti10')
_SPLITS = {'train': 0, 'test': 1}


@functools.lru_cache(maxsize=1)
def digit_glyphs() -> np.ndarray:
  """uint8 [len(FONTS), 10, 28, 28]: each digit's glyph, its longer side 20 px, centred (as
  MNIST digits sit in their 28x28 images)."""
  font_dir = os.path.join(matplotlib.get_data_path(), 'fonts', 'ttf')
  glyphs = np.zeros((len(FONTS), 10, GLYPH_SIZE, GLYPH_SIZE), np.uint8)
  for f, name in enumerate(FONTS):
    font = ImageFont.truetype(os.path.join(font_dir, f'{name}.ttf'), 96)
    for digit in range(10):
      canvas = Image.new('L', (160, 160))
      ImageDraw.Draw(canvas).text((30, 10), str(digit), fill=255, font=font)
      glyph = canvas.crop(canvas.getbbox())
      scale = 20 / max(glyph.size)
      glyph = glyph.resize((max(1, round(glyph.width * scale)), max(1, round(glyph.height * scale))),
                           Image.LANCZOS)
      box = Image.new('L', (GLYPH_SIZE, GLYPH_SIZE))
      box.paste(glyph, ((GLYPH_SIZE - glyph.width) // 2, (GLYPH_SIZE - glyph.height) // 2))
      glyphs[f, digit] = np.asarray(box)
  return glyphs


def _random_glyph(rng: np.random.Generator, digit: int) -> np.ndarray:
  """A [28, 28] glyph of `digit` in a random font, scaled by 0.8..1.2 and rotated by +-20 deg."""
  glyph = Image.fromarray(digit_glyphs()[rng.integers(len(FONTS)), digit])
  size = round(GLYPH_SIZE * rng.uniform(0.8, 1.2))
  glyph = glyph.resize((size, size), Image.BILINEAR).rotate(rng.uniform(-20, 20), Image.BILINEAR)
  box = Image.new('L', (GLYPH_SIZE, GLYPH_SIZE))
  box.paste(glyph, ((GLYPH_SIZE - size) // 2, (GLYPH_SIZE - size) // 2))
  return np.asarray(box)


def _bounce(start: np.ndarray, velocity: np.ndarray, num_frames: int) -> np.ndarray:
  """Integer top-left corners [T, 2] of a glyph moving at `velocity` (px/frame), reflected at
  the frame's edges."""
  limit = FRAME_SIZE - GLYPH_SIZE
  path = start + velocity * np.arange(num_frames)[:, None]
  path = np.mod(path, 2 * limit)  # Unfold the reflections: a triangle wave in [0, limit].
  return np.round(np.where(path > limit, 2 * limit - path, path)).astype(np.int64)


def generate_clip(rng: np.random.Generator, num_frames: int, min_digits: int = 1,
                  max_digits: int = MAX_DIGITS) -> dict[str, np.ndarray]:
  """One clip: 'video' uint8 [T, 64, 64, 1], 'digits' [MAX_DIGITS] (-1 pads), 'num_digits'."""
  if not 1 <= min_digits <= max_digits <= MAX_DIGITS:
    raise ValueError(f'Need 1 <= min_digits <= max_digits <= {MAX_DIGITS}, got {min_digits}, '
                     f'{max_digits}.')
  count = int(rng.integers(min_digits, max_digits + 1))
  video = np.zeros((num_frames, FRAME_SIZE, FRAME_SIZE), np.uint8)
  digits = np.full((MAX_DIGITS,), -1, np.int64)
  for i in range(count):
    digits[i] = rng.integers(10)
    glyph = _random_glyph(rng, int(digits[i]))
    angle = rng.uniform(0, 2 * np.pi)
    velocity = rng.uniform(2.0, 4.0) * np.array([np.sin(angle), np.cos(angle)])
    corners = _bounce(rng.uniform(0, FRAME_SIZE - GLYPH_SIZE, size=2), velocity, num_frames)
    for t, (y, x) in enumerate(corners):
      window = video[t, y:y + GLYPH_SIZE, x:x + GLYPH_SIZE]
      np.maximum(window, glyph, out=window)
  return {'video': video[..., None], 'digits': digits, 'num_digits': np.int64(count)}


@dataclasses.dataclass
class MovingDigitsConfig(tfds.core.BuilderConfig):
  num_frames: int = 16
  min_digits: int = 1
  max_digits: int = MAX_DIGITS
  train_size: int = 10_000
  test_size: int = 1_000
  seed: int = 0


class MovingDigits(tfds.core.GeneratorBasedBuilder):
  """Bouncing font-rendered digits, 64x64 grayscale; no download."""

  VERSION = tfds.core.Version('1.0.0')
  BUILDER_CONFIGS = [
      MovingDigitsConfig(name='frames_16', description='16-frame clips (VideoGPT\'s length).',
                         num_frames=16),
      MovingDigitsConfig(name='frames_20', description='20-frame clips (Moving MNIST\'s length).',
                         num_frames=20),
      MovingDigitsConfig(name='frames_16_small', description='16-frame clips, 256 to train and '
                         '64 to test (built in seconds: smoke tests, notebooks).', num_frames=16,
                         train_size=256, test_size=64),
  ]

  def __init__(self, **kwargs):
    kwargs.setdefault('file_format', 'array_record')  # TFDS's tfrecord writer needs TensorFlow.
    super().__init__(**kwargs)

  def _info(self) -> tfds.core.DatasetInfo:
    c = self.builder_config
    return tfds.core.DatasetInfo(
        builder=self,
        description=__doc__.split('\n\n')[0],
        features=tfds.features.FeaturesDict({
            'video': tfds.features.Tensor(shape=(c.num_frames, FRAME_SIZE, FRAME_SIZE, 1),
                                          dtype=np.uint8, encoding='zlib'),
            'digits': tfds.features.Tensor(shape=(MAX_DIGITS,), dtype=np.int64),
            'num_digits': tfds.features.Tensor(shape=(), dtype=np.int64),
        }),
        disable_shuffling=True,  # Example i is the clip of seed (seed, split, i).
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Nothing to download.
    c = self.builder_config
    return {'train': self._generate_examples('train', c.train_size),
            'test': self._generate_examples('test', c.test_size)}

  def _generate_examples(self, split: str, size: int):
    c = self.builder_config
    for i in range(size):
      rng = np.random.default_rng((c.seed, _SPLITS[split], i))
      yield i, generate_clip(rng, c.num_frames, c.min_digits, c.max_digits)
