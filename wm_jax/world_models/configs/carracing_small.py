"""CarRacing-v3 sized for the 2-core CPU, C trained in the REAL environment as in the paper: the
paper's V (z 32), M (256 units, no restart flag) and C (867 parameters) on 500 random episodes
instead of 10,000, V for 3,000 steps, and a CMA-ES budget of 16 candidates x 1 real episode for
16 generations: 256 real episodes (the paper: 64 x 16 for 1,800, 1,843,200). The budget is what
one 3-hour session of the 2-core CPU leaves after collection, V, M and the dream run's C.

  python -m experiments.world_models --config=wm_jax/world_models/configs/carracing_small.py \
      --workdir=runs/carracing_small

A real episode is up to 1,000 steps of gymnasium's CarRacing (~110-140 steps/s per core here,
93% of it the game drawing its road), so a generation of 16 episodes is ~1 min on 2 cores.
Collect, V and encode are the same as carracing_dream_small.py's: copying a finished workdir's
`data/` and `vae/` into the other's skips those stages (the configs accept each other's). Scores
and stage times: docs/results.md.
"""

from wm_jax.world_models.configs import carracing


def get_config():
  config = carracing.get_config()
  config.collect.num_episodes = 500
  config.vae.num_steps = 3000  # ~0.6 epoch of these ~0.5M frames (paper: 1 epoch of 10M frames).
  config.vae.learning_rate = 3e-4  # As doom_take_cover_small: the paper's 1e-4 needs more steps.
  config.vae.eval_every = 500
  config.vae.checkpoint_every = 500
  # 100-step chunks: ~50 Adam steps an epoch, ~1,000 in 20 epochs (whole episodes of 500 would
  # give 100; the paper's whole episodes of 10,000, 2,000).
  config.mdn.chunk_length = 100
  config.controller.population_size = 16
  config.controller.num_rollouts = 1
  config.controller.num_generations = 16
  config.controller.eval_every = 8
  config.controller.eval_episodes = 8
  return config
