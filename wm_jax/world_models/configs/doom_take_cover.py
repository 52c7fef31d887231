"""DoomTakeCover at the paper's scale (Ha & Schmidhuber, 2018): C trained
entirely inside M's dream at tau = 1.15, then scored in the real game over 100 episodes.

  python -m experiments.world_models --config=wm_jax/world_models/configs/doom_take_cover.py \
      --workdir=runs/doom_take_cover

Paper values: 10,000 random-policy episodes (a random action held 1..10 frames, episodes under
100 frames dropped, at most 2100 frames); V with z = 64; M with 512 LSTM units, the restart
flag, a done head (BCE with deaths weighted 10x), one action input (-1 / 0 / 1), 500-step
chunks, batch 100, lr 1e-3 decayed 0.99999 per step, 20 epochs; C = tanh(W [z, c, h]) without
bias (1088 parameters) in thirds; CMA-ES with population 64 x 16 rollouts, sigma 0.1, weight
decay 0.01.
A GPU (or TPU) job: M's dream runs 1024 episodes of up to 2100 steps per generation.
"""

from wm_jax.world_models.configs import default


def get_config():
  config = default.get_config()
  config.env.name = 'DoomTakeCover'

  config.collect.num_episodes = 10_000
  config.env.max_steps = 2100
  config.collect.max_action_repeat = 10
  config.collect.min_steps = 100

  config.vae.model.z_size = 64
  config.vae.learning_rate = 1e-4  # Paper.
  config.vae.batch_size = 100  # Paper.
  # Kept random-policy episodes average 316 frames (doom_take_cover_small's 600: 189,344
  # frames), so 32,000 steps of 100 frames are ~1 epoch of 10,000 (paper appendix: 1 epoch).
  config.vae.num_steps = 32_000
  config.vae.eval_every = 1000
  config.vae.checkpoint_every = 1000

  config.mdn.sample_z = True  # Paper: M learns z ~ N(mu, sigma), C reads sampled z.
  config.controller.sample_z = True
  config.mdn.model.hidden_size = 512
  config.mdn.action_input = 'centered'
  config.mdn.model.predict_done = True
  config.mdn.done_weight = 1.0
  config.mdn.done_positive_weight = 10.0  # Paper: deaths' BCE x10 (restart_factor).
  config.mdn.learning_rate = 1e-3  # Paper.
  config.mdn.lr_decay = 0.99999
  config.mdn.num_streams = 100  # Paper: batch 100.
  config.mdn.chunk_length = 500
  config.mdn.num_epochs = 20  # Paper.

  config.controller.action_map = 'doom'
  config.controller.include_cell = True
  config.dream.temperature = 1.15
  config.dream.sample_done = False  # Paper: the dream ends when the done logit > 0.
  config.controller.max_steps = 2100
  config.controller.num_generations = 1800  # The authors'.
  config.controller.eval_every = 100
  config.controller.eval_episodes = 32

  config.evaluate.num_episodes = 100
  return config
