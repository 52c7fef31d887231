"""The paper's Moving MNIST VQ-VAE (VideoGPT, table 8) on TFDS's moving_mnist.

16x64x64 -> 4x16x16, 512 x 64 codes, 2 residual layers without attention, hidden 240 and 128
residual units, 20k steps. TFDS's moving_mnist downloads its 10,000 clips (20 frames; the first
9,000 train, random 16-frame windows). For the offline Moving-Digits data at these sizes, use the
default config with --config.model.hidden=240 --config.model.residual_units=128.

  python -m experiments.train_vqvae --config=wm_jax/videogpt/configs/vqvae_moving_mnist.py \
      --workdir=runs/vqvae_mmnist
"""

from wm_jax.videogpt.configs import vqvae_moving_digits


def get_config():
  config = vqvae_moving_digits.get_config()
  config.data.update(name='moving_mnist', batch_size=32)
  config.model.update(hidden=240, residual_units=128)
  config.train.update(num_steps=20_000, log_every=100, eval_every=2_000, checkpoint_every=2_000)
  config.eval.fvd_trials = 4
  return config
