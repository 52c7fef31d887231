import numpy as np
import pytest

from wm_jax.data import moving_digits


def test_glyphs_are_ten_distinct_digits_per_font():
  glyphs = moving_digits.digit_glyphs()
  assert glyphs.shape == (len(moving_digits.FONTS), 10, 28, 28) and glyphs.dtype == np.uint8
  ink = (glyphs > 0).sum(axis=(2, 3))
  assert ink.min() > 40  # Every font renders every digit.
  flat = glyphs.reshape(len(moving_digits.FONTS), 10, -1).astype(float)
  for font in flat:  # Digits of one font differ from each other.
    distances = np.linalg.norm(font[:, None] - font[None], axis=-1)
    assert distances[~np.eye(10, dtype=bool)].min() > 100


def test_clips_are_deterministic_and_bounce_inside_the_frame():
  clip = moving_digits.generate_clip(np.random.default_rng((0, 0, 7)), 20)
  again = moving_digits.generate_clip(np.random.default_rng((0, 0, 7)), 20)
  other = moving_digits.generate_clip(np.random.default_rng((0, 0, 8)), 20)
  np.testing.assert_array_equal(clip['video'], again['video'])
  assert not np.array_equal(clip['video'], other['video'])
  assert clip['video'].shape == (20, 64, 64, 1) and clip['video'].dtype == np.uint8
  assert 1 <= clip['num_digits'] <= 2
  assert (clip['digits'][:clip['num_digits']] >= 0).all()
  assert (clip['digits'][clip['num_digits']:] == -1).all()
  ink = (clip['video'] > 0).sum(axis=(1, 2, 3))
  assert (ink > 40).all()  # A digit is visible in every frame.
  assert not np.array_equal(clip['video'][0], clip['video'][-1])  # It moves.


def test_corners_reflect_at_the_edges():
  corners = moving_digits._bounce(np.array([30.0, 1.0]), np.array([3.0, -2.0]), 40)
  assert corners.min() >= 0 and corners.max() <= 64 - 28
  steps = np.abs(np.diff(corners, axis=0))
  assert steps.max() <= 3


def test_builder_writes_both_splits(tmp_path):
  config = moving_digits.MovingDigitsConfig(name='tiny', num_frames=16, train_size=12,
                                            test_size=4, seed=3)
  builder = moving_digits.MovingDigits(config=config, data_dir=str(tmp_path))
  builder.download_and_prepare()
  train, test = builder.as_data_source('train'), builder.as_data_source('test')
  assert len(train) == 12 and len(test) == 4
  expected = moving_digits.generate_clip(np.random.default_rng((3, 0, 5)), 16)
  np.testing.assert_array_equal(train[5]['video'], expected['video'])
  np.testing.assert_array_equal(train[5]['digits'], expected['digits'])


def test_bad_digit_counts_are_named():
  with pytest.raises(ValueError, match='max_digits'):
    moving_digits.generate_clip(np.random.default_rng(0), 16, 1, 3)
