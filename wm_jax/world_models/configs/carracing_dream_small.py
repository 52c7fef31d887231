"""CarRacing-v3 sized for the 2-core CPU, C trained in the dream of an M with a reward head
(carracing_dream.py's switch): carracing_small.py's data, V and encoding, its M with a reward
head, and the paper's CMA-ES population (64 x 16 dream episodes of 1,000 steps) for 150
generations (the paper: 1,800).

  python -m experiments.world_models --config=wm_jax/world_models/configs/carracing_dream_small.py \
      --workdir=runs/carracing_dream_small

Scores and stage times: docs/results.md.
"""

from wm_jax.world_models.configs import carracing_dream, carracing_small


def get_config():
  config = carracing_dream.in_the_dream(carracing_small.get_config())
  config.controller.population_size = 64
  config.controller.num_rollouts = 16
  config.controller.num_generations = 150
  config.controller.eval_every = 25
  return config
