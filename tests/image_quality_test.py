import jax
import numpy as np

from wm_jax.metrics import image_quality


def test_psnr_of_a_known_error():
  videos = np.zeros((2, 3, 16, 16, 1), np.float32)
  noisy = videos + 0.1  # MSE 0.01 on the [0, 1] scale: 20 dB.
  np.testing.assert_allclose(image_quality.psnr(videos, noisy), [20.0, 20.0], rtol=1e-5)


def test_ssim_is_one_for_identical_videos_and_falls_with_noise():
  videos = jax.random.uniform(jax.random.key(0), (2, 3, 32, 32, 3), minval=-0.5, maxval=0.5)
  noise = jax.random.normal(jax.random.key(1), videos.shape)
  np.testing.assert_allclose(image_quality.ssim(videos, videos), [1.0, 1.0], rtol=1e-5)
  scores = [float(image_quality.ssim(videos, videos + s * noise).mean()) for s in (0.05, 0.2)]
  assert 1.0 > scores[0] > scores[1]


def test_reconstructions_are_clipped_to_the_data_range():
  videos = np.full((1, 2, 16, 16, 1), 0.5, np.float32)
  np.testing.assert_allclose(image_quality.psnr(videos, videos + 3.0), [np.inf])
