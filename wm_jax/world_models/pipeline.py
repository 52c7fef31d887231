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

import jax
import ml_collections

from wm_jax.common.config import check_keys, check_ranges
from wm_jax.common.workdir_lock import workdir_lock
from wm_jax.world_models import configs
from wm_jax.world_models.stages import (collect, controller, encode, evaluate, iterate, mdn,
                                        vae)

# The stages that run on every process of a multi-process run (`wm_jax.common.distributed`): V's
# training, tested with two processes. The others run in one process (M and C are not yet made
# safe for several: their checkpoint directories are cleared and restored by every process).
MULTI_PROCESS_STAGES = ('vae',)
STAGES: dict[str, Callable[[ml_collections.ConfigDict, str], dict[str, Any]]] = {
    'collect': collect.collect,
    'vae': vae.train_and_evaluate,
    'encode': encode.encode,
    'mdn': mdn.train_and_evaluate,
    'controller': controller.train_and_evaluate,
    'iterate': iterate.run_rounds,
    'evaluate': evaluate.evaluate,
}


# Values that cannot work outside these ranges (`check_ranges`).
VALUE_RANGES = {
    **dict.fromkeys(('mesh.data', 'env.max_steps', 'collect.num_episodes',
                     'collect.max_action_repeat', 'collect.min_steps',
                     'collect.episodes_per_chunk', 'vae.model.z_size', 'vae.batch_size',
                     'vae.num_steps', 'vae.shuffle_window', 'vae.log_every', 'vae.eval_every',
                     'vae.checkpoint_every', 'encode.batch_size', 'mdn.model.hidden_size',
                     'mdn.model.num_mixtures', 'mdn.num_streams', 'mdn.chunk_length',
                     'mdn.num_epochs', 'controller.population_size', 'controller.num_rollouts',
                     'controller.max_steps', 'controller.num_generations',
                     'controller.eval_every', 'controller.eval_episodes', 'iterative.rounds',
                     'iterative.num_episodes', 'evaluate.num_episodes', 'evaluate.gif_steps'),
                    '>= 1'),
    **dict.fromkeys(('vae.learning_rate', 'mdn.learning_rate', 'mdn.lr_decay', 'mdn.grad_clip',
                     'mdn.done_positive_weight', 'controller.sigma_init', 'dream.temperature'),
                    '> 0'),
    **dict.fromkeys(('env.num_workers', 'vae.kl_tolerance', 'mdn.done_weight',
                     'controller.weight_decay', 'iterative.epsilon'), '>= 0'),
}


def check_config(config: ml_collections.ConfigDict) -> None:
  """Raises a ValueError naming unknown keys (with a "did you mean"), values out of range and
  settings that cannot work, before any stage runs."""
  check_keys(config, configs.get('default'), 'wm_jax/world_models/configs/default.py')
  check_ranges(config, VALUE_RANGES)
  controller.check_settings(config)
  # Episodes end by env.max_steps at the latest: too few steps for M is known before collecting.
  mdn.check_steps(config.collect.num_episodes * config.env.max_steps, config.mdn.num_streams,
                  config.mdn.chunk_length,
                  'collect.num_episodes x env.max_steps: the rollouts would at most')


def run(config: ml_collections.ConfigDict, workdir: str,
        stages: Sequence[str] | None = None) -> dict[str, dict[str, Any]]:
  """Runs `stages` (all of `STAGES` by default, in order) on `workdir`; returns {stage: its
  results as a plain dict, with 'seconds' it took}."""
  stages = list(STAGES) if stages is None else list(stages)
  unknown = [s for s in stages if s not in STAGES]
  if unknown:
    raise ValueError(f'Unknown stages {unknown}; expected some of {tuple(STAGES)}.')
  single = [s for s in stages if s not in MULTI_PROCESS_STAGES]
  if jax.process_count() > 1 and single:
    raise ValueError(f'The stages {single} run in one process: run them without joining a '
                     f'multi-process run, and the stages {MULTI_PROCESS_STAGES} on all processes.')
  check_config(config)
  results = {}
  with workdir_lock(workdir):  # One process at a time, over all the stages.
    for name in stages:
      start = time.perf_counter()
      results[name] = dict(STAGES[name](config, workdir))
      results[name]['seconds'] = round(time.perf_counter() - start, 1)
      print(f'stage {name} done in {results[name]["seconds"]} s', flush=True)
  return results
