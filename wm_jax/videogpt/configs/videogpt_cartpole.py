"""VideoGPT as an action-conditioned world model of pixel CartPole, sized for a 2-core CPU.

The prior models the 4x16x16 codes of the VQ-VAE of `vqvae_cartpole.py` (by default codes
relative to frame 7, the last context frame, from which predictions decode), each latent step (4
frames) conditioned through conditional LayerNorm on the one-hot actions that led to its frames.
Prediction keeps the codes of the first 8 frames (the context) and samples the rest given the
clip's actions; the predicted frames are scored against the true ones 1, 4 and 8 frames after
the context, beside repeating the last context frame. Each prediction is the pixel mean of 16
sampled futures (`predict.num_samples`), the prior's expected video;
`--config.predict.top_k=1 --config.predict.num_samples=1` is greedy,
`--config.predict.num_samples=1` one draw. 3,200 training steps without dropout; results,
times and the measured alternatives in docs/results.md. ':tiny' is the tests' variant (a
one-layer prior that also cross-attends to 2 conditioning frames, a few steps).

  python -m experiments.train_videogpt --config=wm_jax/videogpt/configs/videogpt_cartpole.py \
      --workdir=runs/videogpt_cartpole   # after those of vqvae_cartpole.py
"""

from wm_jax.videogpt.configs import videogpt_moving_digits


def get_config(variant: str = ''):
  config = videogpt_moving_digits.get_config()
  config.vqvae.workdir = 'runs/vqvae_cartpole'
  config.data.name = 'world_models'
  config.data.data_dir = 'runs/cartpole_video'
  config.data.action_dim = 2  # CartPole: push left / right, one-hot.
  config.eval.fvd_trials = 0
  config.samples.num_videos = 8
  config.predict.context_frames = 8
  config.predict.num_clips = 64
  config.model.dropout = 0.0
  config.train.num_steps = 3200
  config.predict.num_samples = 16  # Drawn with plain softmax sampling (top_k 0, temperature 1).
  if variant == 'tiny':
    shrink_to_tiny(config)
  elif variant:
    raise ValueError(f"videogpt_cartpole.py takes 'tiny' after ':', got {variant!r}.")
  return config


def shrink_to_tiny(config) -> None:
  """For 8-frame clips of `vqvae_cartpole:tiny` (2 frames per latent step): the tiny Moving-Digits
  prior that also cross-attends to 2 conditioning frames through a small ResNet, 2 predicted
  horizons (the tests')."""
  videogpt_moving_digits.shrink_to_tiny(config)
  config.model.update(cond_frames=2, resnet_blocks=(1, 1, 1, 1), resnet_widths=(8, 8, 8, 12),
                      resnet_stem=8)
  config.predict.update(context_frames=4, horizons=(1, 4), num_clips=4, num_samples=1)
