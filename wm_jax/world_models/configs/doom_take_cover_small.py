"""DoomTakeCover sized to finish on a 2-core CPU within 2 hours: the paper's pipeline (C
trained only in M's dream at tau = 1.30, then scored in the real game over 100 episodes) on
fewer episodes, fewer V steps and a smaller CMA-ES budget.

  python -m experiments.world_models --config=wm_jax/world_models/configs/doom_take_cover_small.py \
      --workdir=runs/doom_small

Departures from wm_jax/world_models/configs/doom_take_cover.py (the paper's values): 2,000
episodes (not 10,000) whose random actions are held 1..30 frames (not 1..10), V for 2,000 steps
at lr 3e-4 (not ~1 epoch at 1e-4), M on 100-step chunks for 15 epochs (not 500-step chunks for
20), CMA-ES population 64 x 8 rollouts (not x 16) for 150 generations (not 1,800) with dream
episodes capped at 1,000 steps while training (the real game still runs to 2,100). V (z 64),
M (512 units, deaths weighted 10x in its done loss) and C (1088 parameters) are the paper's;
tau is the paper's 1.30 (its best score was at 1.15; at 1.30 its dream and real scores agreed).

Why these departures, and the scores and stage times of this config and the ones before it:
docs/results.md (DoomTakeCover).
"""

from wm_jax.world_models.configs import doom_take_cover


def get_config():
  config = doom_take_cover.get_config()
  config.collect.num_episodes = 2000
  config.collect.max_action_repeat = 30  # Paper: 10; see the docstring.
  config.vae.num_steps = 2000
  config.vae.learning_rate = 3e-4  # As the CartPole default: the paper's 1e-4 needs more steps.
  config.vae.eval_every = 250
  config.vae.checkpoint_every = 500
  config.mdn.chunk_length = 100
  config.mdn.num_epochs = 15  # ~1,060 Adam steps over 2,000 episodes (919 s here).
  config.controller.num_rollouts = 8
  config.controller.max_steps = 1000
  config.controller.num_generations = 150
  config.dream.temperature = 1.3  # See the docstring (the paper-scale config: 1.15).
  config.controller.eval_every = 25
  config.controller.eval_episodes = 16
  return config
