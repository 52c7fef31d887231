"""The paper's Moving MNIST VQ-VAE (VideoGPT, table 8) on TFDS's moving_mnist.

16x64x64 -> 4x16x16, 512 x 64 codes, 2 residual layers without attention, hidden 240 and 128
residual units, 20k steps. TFDS's moving_mnist downloads its 10,000 clips (20 frames; the first
9,000 train, random 16-frame windows). For the offline Moving-Digits data at these sizes, use the
default config with --config.model.hidden=240 --config.model.residual_units=128.

  python -m experiments.train_vqvae --config=experiments/configs/vqvae_moving_mnist.py --workdir=runs/vqvae_mmnist
"""

from wm_jax.videogpt.configs import vqvae_moving_digits


def get_config():
  config = vqvae_moving_digits.get_config()
  config.data.name = 'moving_mnist'
  config.data.batch_size = 32
  config.model.hidden = 240
  config.model.residual_units = 128
  config.train.num_steps = 20_000
  config.train.log_every = 100
  config.train.eval_every = 2_000
  config.train.checkpoint_every = 2_000
  config.eval.fvd_trials = 4
  return config
