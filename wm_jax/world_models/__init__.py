"""World Models (Ha & Schmidhuber, 2018): V (`models/conv_vae.py`), M (`models/mdn_rnn.py`),
C (`models/controller.py`) trained by CMA-ES (`cmaes.py`) inside M's dream (`dream.py`), then
scored in the real environment (`latent_env.py`). `run(config, workdir)` runs the pipeline
(`pipeline.py`); `configs.get(name)` loads a packaged config; `gymnax.make(DREAM_ENV_ID,
workdir=...)` is a trained workdir's dream."""

import gymnax

from wm_jax.world_models import configs
from wm_jax.world_models.dream import DREAM_ENV_ID
from wm_jax.world_models.pipeline import STAGES, run
from wm_jax.world_models.stages.controller import trained_dream
from wm_jax.world_models.workdir import Workdir

if DREAM_ENV_ID not in gymnax.registered_envs:  # gymnax refuses a second registration.
  gymnax.register(DREAM_ENV_ID, trained_dream)

__all__ = ['DREAM_ENV_ID', 'STAGES', 'Workdir', 'configs', 'run']
