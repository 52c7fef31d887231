"""CarRacing-v3 with C trained inside M's dream, which the paper did not do for CarRacing
(its C was trained in the real environment: wm_jax/world_models/configs/carracing.py).

  python -m experiments.world_models --config=wm_jax/world_models/configs/carracing_dream.py \
      --workdir=runs/carracing_dream

CarRacing's return comes from visiting track tiles, so the dream must pay it: M gains a reward
head (`mdn.model.predict_reward`; trained with squared error beside the mixture NLL) and the dream
pays its prediction per step. Episodes never end early, so the dream runs to
`controller.max_steps`. Everything else is wm_jax/world_models/configs/carracing.py; scored over 100
real episodes.
"""

import ml_collections

from wm_jax.world_models.configs import carracing


def in_the_dream(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """A CarRacing config with C trained in the dream of an M with a reward head."""
  config.mdn.model.predict_reward = True
  config.controller.train_in = 'dream'
  config.dream.temperature = 1.0
  return config


def get_config():
  return in_the_dream(carracing.get_config())
