"""CarRacing-v3 sized for the 2-core CPU, C trained in the REAL environment as in the paper: the
paper's V (z 32), M (256 units, no restart flag) and C (867 parameters) on 1,000 random episodes
instead of 10,000, V for 3,000 steps, and a CMA-ES budget of 16 candidates x 1 real episode for
100 generations: 1,600 real episodes (the paper: 64 x 16 for 1,800, 1,843,200).

  python -m experiments.world_models --config=wm_jax/world_models/configs/carracing_small.py \
      --workdir=runs/carracing_small

A real episode is 1,000 steps of gymnasium's CarRacing (~180 steps/s per core here), so a
generation of 16 episodes is ~45 s on 2 cores. Collect, V and encode are the same as
carracing_dream_small.py's: copying a finished workdir's `data/` and `vae/` into the other's
skips those stages (the configs accept each other's). Scores and stage times: docs/results.md.
"""

from wm_jax.world_models.configs import carracing


def get_config():
  config = carracing.get_config()
  config.collect.num_episodes = 1000
  config.vae.num_steps = 3000  # ~0.3 epoch of these 1M frames (paper: 1 epoch of 10M frames).
  config.vae.learning_rate = 3e-4  # As doom_take_cover_small: the paper's 1e-4 needs more steps.
  config.vae.eval_every = 500
  config.vae.checkpoint_every = 500
  # 100-step chunks: 100 Adam steps an epoch, 2,000 in 20 epochs, as the paper's whole episodes
  # of 10,000 (whole episodes of 1,000 would give 200).
  config.mdn.chunk_length = 100
  config.controller.population_size = 16
  config.controller.num_rollouts = 1
  config.controller.num_generations = 100
  config.controller.eval_every = 20
  config.controller.eval_episodes = 8
  return config
