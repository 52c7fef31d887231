import numpy as np
import pytest
import scipy.linalg

from wm_jax.metrics import fvd


def test_frechet_distance_equals_the_formula_with_a_matrix_square_root():
  rng = np.random.default_rng(0)
  a = rng.normal(size=(200, 6))
  b = rng.normal(size=(150, 6)) @ rng.normal(size=(6, 6)) + 0.5
  mu_a, mu_b = a.mean(0), b.mean(0)
  cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
  expected = (np.sum((mu_a - mu_b)**2) + np.trace(cov_a + cov_b)
              - 2 * np.trace(scipy.linalg.sqrtm(cov_a @ cov_b)).real)
  np.testing.assert_allclose(fvd.frechet_distance(a, b), expected, rtol=1e-8)
  assert abs(fvd.frechet_distance(a, a)) < 1e-8


def test_fvd_is_zero_for_the_same_videos_and_grows_with_noise():
  """I3D on CPU is slow: 6 videos of 10 frames, each set through the network once."""
  rng = np.random.default_rng(0)
  base = rng.uniform(-0.5, 0.5, size=(6, 10, 16, 16, 3)).astype(np.float32)
  base = np.repeat(np.repeat(base, 2, axis=2), 2, axis=3)  # Some spatial structure.
  noise = rng.normal(size=base.shape).astype(np.float32)
  features = fvd.i3d_features(np.concatenate([base, base + 0.05 * noise, base + 0.3 * noise]),
                              batch_size=6)
  assert features.shape == (18, 400) and np.isfinite(features).all()
  clean, little, lots = features[:6], features[6:12], features[12:]
  scale = np.trace(np.cov(clean, rowvar=False))  # FVD's size for unrelated sets of this spread
  assert abs(fvd.frechet_distance(clean, clean)) < 1e-5 * scale  # (eigh round-off at rank 5)
  assert 1e-3 * scale < fvd.frechet_distance(clean, little) < fvd.frechet_distance(clean, lots)


def test_i3d_input_checks():
  with pytest.raises(ValueError, match='at least 9 frames'):
    fvd.preprocess(np.zeros((1, 8, 16, 16, 3), np.float32))
  with pytest.raises(ValueError, match='1 or 3'):
    fvd.preprocess(np.zeros((1, 16, 16, 16, 2), np.float32))
  x = fvd.preprocess(np.full((1, 9, 16, 16, 1), 255, np.uint8))
  assert x.shape == (1, 9, 224, 224, 3) and abs(float(x.min()) - 1.0) < 1e-6
