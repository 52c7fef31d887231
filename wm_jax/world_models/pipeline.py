"""The World Models pipeline as a library function: collect -> train V -> encode -> train M ->
train C in the dream -> (iterate: collect with C, retrain M and C, for `iterative.rounds` - 1
rounds) -> evaluate C in the real environment.

  from wm_jax import world_models
  results = world_models.run(world_models.configs.get('default'), 'runs/cartpole')

Each stage resumes, and is skipped when its output in the workdir is complete; a workdir
written with a different configuration is refused with the keys that differ (`workdir.py`).
"""

from __future__ import annotations

import time
from typing import Any, Callable, Sequence

import ml_collections

from wm_jax.common.config import check_keys
from wm_jax.common.workdir_lock import workdir_lock
from wm_jax.world_models import configs
from wm_jax.world_models.stages import (collect, controller, encode, evaluate, iterate, mdn,
                                        vae)

STAGES: dict[str, Callable[[ml_collections.ConfigDict, str], dict[str, Any]]] = {
    'collect': collect.collect,
    'vae': vae.train_and_evaluate,
    'encode': encode.encode,
    'mdn': mdn.train_and_evaluate,
    'controller': controller.train_and_evaluate,
    'iterate': iterate.run_rounds,
    'evaluate': evaluate.evaluate,
}


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ValueError naming unknown keys (with a "did you mean") and settings that cannot
  work, before any stage runs."""
  check_keys(config, configs.get('default'), 'wm_jax/world_models/configs/default.py')
  controller.check_settings(config)
  if config.iterative.rounds < 1:
    raise ValueError(f'iterative.rounds must be >= 1 (1: no iteration), got '
                     f'{config.iterative.rounds}.')


def run(config: ml_collections.ConfigDict, workdir: str,
        stages: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
  """Runs `stages` (all of `STAGES` by default, in order) on `workdir`; returns {stage: its
  results as a plain dict, with 'seconds' it took}."""
  stages = list(STAGES) if stages is None else list(stages)
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f'Unknown stages {unknown}; expected some of {tuple(STAGES)}.')
  check_config(config)
  results = {}
  with workdir_lock(workdir):  # One process at a time, over all the stages.
    for name in stages:
      start = time.perf_counter()
      results[name] = dict(STAGES[name](config, workdir))
      results[name]['seconds'] = round(time.perf_counter() - start, 1)
      print(f'stage {name} done in {results[name]["seconds"]} s', flush=True)
  return results
