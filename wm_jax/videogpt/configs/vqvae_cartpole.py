"""VideoGPT's VQ-VAE on pixel-CartPole rollouts (the World Models collect stage's data), the
first half of VideoGPT as an action-conditioned world model (`videogpt_cartpole.py`).

The model is the CPU Moving-Digits one (`vqvae_moving_digits.py`: hidden 64, 4x16x16 codes of
16x64x64 clips) on RGB frames; 'train' is the first 90% of the episodes, 'test' the rest.
By default its codes are relative to frame 7, the last context frame of the world model's
predictions (`model.reference_frame`, not in the paper; wm_jax/videogpt/models/video_vqvae.py),
with `train.data_variance` 0.0008, set for the small variance of x - x_7 (docs/videogpt.md;
results in docs/results.md). Variants: ':reference' is this default; ':paper' the paper's VQ-VAE
(no reference frame, data variance 0.06); ':tiny' the tests' (8 frames of 32x32, a few steps).

  python -m experiments.world_models --workdir=runs/cartpole_video --stage=collect \
      --config.collect.num_episodes=5000
  python -m experiments.train_vqvae --config=wm_jax/videogpt/configs/vqvae_cartpole.py \
      --workdir=runs/vqvae_cartpole
"""

from wm_jax.videogpt.configs import vqvae_moving_digits

VARIANTS = ('reference', 'paper', 'tiny')


def get_config(variant: str = 'reference'):
  if variant not in VARIANTS:
    raise ValueError(f"vqvae_cartpole.py takes one of {VARIANTS} after ':', got {variant!r}.")
  config = vqvae_moving_digits.get_config()
  config.data.name = 'world_models'
  config.data.data_dir = 'runs/cartpole_video'
  config.data.channels = 3
  config.train.num_steps = 1200
  config.eval.num_clips = 128
  if variant == 'reference':
    config.model.reference_frame = 7
    config.train.data_variance = 0.0008
  if variant == 'tiny':
    vqvae_moving_digits.shrink_to_tiny(config)
  return config

