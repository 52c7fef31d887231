"""VideoGPT VQ-VAE on pixel-CartPole rollouts (the World Models data), for VideoGPT as an
action-conditioned world model (experiments/configs/videogpt_cartpole.py).

The rollouts come from the World Models collect stage; 5,000 random-policy episodes give
2,359 episodes of at least 16 frames (random CartPole episodes last ~19 steps):

  python -m experiments.world_models --workdir=runs/cartpole_video --stage=collect \
      --config.collect.num_episodes=5000
  python -m experiments.train_vqvae --config=experiments/configs/vqvae_cartpole.py \
      --workdir=runs/vqvae_cartpole

The model is the CPU Moving-Digits one (hidden 64, 4x16x16 latents of 16x64x64 clips) with
RGB frames; 'train' is the first 90% of the episodes, 'test' the last 10%.

Not in the paper, by default: codes relative to frame 7, the last context frame of the world
model's predictions (`model.reference_frame`, wm_jax/models/video_vqvae.py). The decoder then
reconstructs x - x_7, whose variance on these clips is 0.00078 (measured over 320 training
clips), not the frames' 0.015, so `train.data_variance` is 0.0008, not the authors' 0.06
(which leaves the reconstruction term ~20x smaller than for whole frames, beside an unchanged
commitment weight). A run with 0.06, before the decoder's last layer started at zero, only
ever copied frame 7 (README). `--config=experiments/configs/vqvae_cartpole.py:paper` is the
paper's VQ-VAE (no reference frame, data variance 0.06).
"""

from wm_jax.videogpt.configs import vqvae_moving_digits


def get_config(variant: str = 'reference'):
  if variant not in ('reference', 'paper'):
    raise ValueError(f"vqvae_cartpole.py takes 'reference' or 'paper' after ':', got "
                     f'{variant!r}.')
  config = vqvae_moving_digits.get_config()
  config.data.name = 'world_models'
  config.data.data_dir = 'runs/cartpole_video'
  config.data.channels = 3
  config.train.num_steps = 1200
  config.eval.num_clips = 128
  if variant == 'reference':
    config.model.reference_frame = 7
    config.train.data_variance = 0.0008
  return config
