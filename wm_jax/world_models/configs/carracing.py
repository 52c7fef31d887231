"""CarRacing-v3 as in the paper (Ha & Schmidhuber, 2018): V with z = 32,
M with 256 LSTM units, and C = tanh(W [z, h] + b) (867 parameters) trained by CMA-ES in the REAL
environment, scored over 100 real episodes.

  python -m experiments.world_models --config=wm_jax/world_models/configs/carracing.py \
      --workdir=runs/carracing

A job for many CPU cores (not run yet: docs/results.md): every generation runs population
64 x 16 rollouts = 1,024 real episodes of 1,000 steps. Random data: 10,000 episodes of a
smooth random driver (`wm_jax.envs.games.CarRacing`; the paper drove random-weight agents), each
action held 1..10 frames.
"""

from wm_jax.world_models.configs import default


def get_config():
  config = default.get_config()
  config.env.name = 'CarRacing-v3'

  config.collect.num_episodes = 10_000
  config.env.max_steps = 1000  # gym's CarRacing time limit.
  config.collect.max_action_repeat = 10

  config.vae.model.z_size = 32
  config.vae.learning_rate = 1e-4  # Paper.
  config.vae.batch_size = 100  # Paper.
  config.vae.num_steps = 100_000  # 1 epoch of 10,000 x 1,000 frames in batches of 100.
  config.vae.eval_every = 1000
  config.vae.checkpoint_every = 1000

  config.mdn.sample_z = True  # Paper: M learns z ~ N(mu, sigma), C reads sampled z.
  config.controller.sample_z = True
  config.mdn.model.hidden_size = 256
  config.mdn.model.use_restart = False  # Paper: 422,368 parameters, no restart flag.
  config.mdn.model.predict_done = False  # Episodes end at the time limit.
  config.dream.sample_done = False  # No done head: dream episodes end at their cap.
  config.mdn.learning_rate = 1e-3  # Paper.
  config.mdn.num_streams = 100  # Paper: batch 100.
  config.mdn.chunk_length = 999  # Paper: whole episodes.
  config.mdn.num_epochs = 20  # Paper.

  config.controller.train_in = 'real'
  config.controller.action_map = 'carracing'
  config.controller.include_cell = False
  config.controller.max_steps = 1000
  config.controller.num_generations = 1800  # The authors'.
  config.controller.eval_every = 25

  config.evaluate.num_episodes = 100
  return config
