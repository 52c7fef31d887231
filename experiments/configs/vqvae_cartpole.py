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
"""

from experiments.configs import vqvae_moving_digits


def get_config():
  config = vqvae_moving_digits.get_config()
  config.data.name = 'world_models'
  config.data.data_dir = 'runs/cartpole_video'
  config.data.channels = 3
  config.train.num_steps = 1200
  config.eval.num_clips = 128
  return config
