"""The controller stage: C trained with CMA-ES entirely inside M's dream (or, with
`controller.train_in='real'`, in the real environment as the paper's CarRacing C), scored in
the dream and the real environment.

It loads the trained V and M, builds the dream (`DreamEnv`: M sampled at `dream.temperature`
from the stored first-frame encodings) and the real environment as C sees it (`LatentEnv`:
pixel frames through V and M), and runs evosax's CMA-ES with the paper's settings. Generations
run in jitted `lax.scan` chunks of `controller.eval_every`; after each chunk the current mean
is scored on `controller.eval_episodes` dream episodes and as many real ones (the real score is
only watched, never used for selection), the metrics are logged and the CMA-ES state is
checkpointed with orbax, so a killed run resumes and ends where an uninterrupted run would
(generation g always meets the key fold_in(key, g)).
"""

from __future__ import annotations

import functools
from typing import Any

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
from tqdm import auto as tqdm
from evosax.algorithms import CMA_ES

from wm_jax.common import training
from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.world_models import configs
from wm_jax.world_models.cmaes import episode_return, make_generation, run_generations, strong_types
from wm_jax.world_models.stages import mdn, vae
from wm_jax.world_models.dream import DreamEnv
from wm_jax.world_models.workdir import (Workdir, check_trained, fingerprint, producing_stage,
                                         stage_checkpoints)
from wm_jax.world_models.world import World, build_world


def load_world(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0) -> World:
  """The world of the workdir's V, initial latents and round `round_index`'s M."""
  with np.load(Workdir(workdir).initial_latents) as initial:
    latents = {'mu': initial['mu'], 'logvar': initial['logvar']}
  return build_world(config, vae.restore_params(config, workdir),
                     mdn.restore_params(config, workdir, round_index), latents)


def trained_dream(workdir: str, config: ml_collections.ConfigDict | str = 'default',
                  round_index: int = 0) -> DreamEnv:
  """The dream of `workdir`'s round `round_index` M, its trained DreamParams as default params.
  `config` is the one the workdir was trained with: a ConfigDict or a packaged config's name
  ('default:tiny'). gymnax's factory for `dream.DREAM_ENV_ID`."""
  return load_world(configs.get(config) if isinstance(config, str) else config, workdir,
                    round_index).dream


def make_scorer(env, env_params, policy, max_steps: int):
  """Jitted `score(theta, keys [N]) -> returns [N]`: one episode per key, vmapped."""
  return jax.jit(jax.vmap(
      lambda theta, key: episode_return(env, env_params, policy, theta, key, max_steps),
      in_axes=(None, 0)))


def make_strategy(config: ml_collections.ConfigDict, template):
  """evosax's CMA-ES with the config's population and initial sigma: (es, es_params)."""
  es = CMA_ES(population_size=config.controller.population_size, solution=template)
  return es, es.default_params.replace(std_init=config.controller.sigma_init)


def check_settings(config: ml_collections.ConfigDict) -> None:
  c = config.controller
  if c.train_in not in ('dream', 'real'):
    raise ValueError(f"controller.train_in must be 'dream' or 'real', got {c.train_in!r}.")
  if c.num_generations % c.eval_every:
    raise ValueError(f'controller.num_generations={c.num_generations} must be a multiple of '
                     f'controller.eval_every={c.eval_every} (one compiled chunk size).')


def make_chunk(config: ml_collections.ConfigDict, world: World, es, es_params, mesh):
  """`controller.eval_every` generations as one jitted call: (es_state, key, first) ->
  (es_state, GenerationMetrics [eval_every])."""
  c = config.controller
  if c.train_in == 'dream':
    env, env_params = world.dream, world.dream_params
  else:  # Every candidate's rollouts are real episodes (the paper's CarRacing C).
    env, env_params = world.real, world.real_params
  generation = make_generation(env, env_params.replace(max_steps_in_episode=c.max_steps),
                               world.policy, es, es_params, c.num_rollouts, c.max_steps,
                               c.weight_decay, training.data_sharding(mesh, c.population_size))
  return jax.jit(functools.partial(run_generations, generation, num_generations=c.eval_every),
                 donate_argnums=0)


def log_chunk(log: training.MetricsLog, start: int, metrics, scores: dict[str, float]) -> None:
  """The chunk's per-generation population statistics and the mean's scores after it."""
  metrics = jax.device_get(metrics)
  for i in range(len(metrics.mean_return)):
    log.write(start + i + 1, {f'population/{k}': float(getattr(metrics, k)[i])
                              for k in ('mean_return', 'best_return', 'mean_fitness')})
  log.write(start + len(metrics.mean_return), scores)
  if not np.isfinite(metrics.mean_fitness).all():
    raise FloatingPointError(f'CMA-ES fitness is not finite by generation '
                             f'{start + len(metrics.mean_return)}.')


@holds_workdir_lock
def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0
                       ) -> dict[str, float]:
  """Runs `controller.num_generations` generations of CMA-ES in the dream of round
  `round_index`'s M, resuming from the last checkpoint. Returns the last logged scores
  ({'step': generations, 'mean_dream_return', 'mean_real_return', ...})."""
  c = config.controller
  check_settings(config)
  world = load_world(config, workdir, round_index)
  mesh = training.make_mesh(config.mesh.data)
  es, es_params = make_strategy(config, world.template)
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 3), round_index)
  key_init, key_generations, key_eval = jax.random.split(key, 3)
  es_state = strong_types(es.init(key_init, world.template, es_params))
  manager = stage_checkpoints(config, workdir, 'controller', round_index)
  restored = training.restore_newest(manager,
                                     ocp.args.StandardRestore(training.abstract(es_state)))
  first, es_state = restored if restored is not None else (0, es_state)
  run = make_chunk(config, world, es, es_params, mesh)
  eval_keys = jax.random.split(key_eval, c.eval_episodes)
  score_dream = make_scorer(world.dream, world.dream_params, world.policy, config.env.max_steps)
  score_real = make_scorer(world.real, world.real_params, world.policy, config.env.max_steps)
  out = Workdir(workdir).controller(round_index)
  log = training.MetricsLog(out)
  progress = tqdm.tqdm(initial=first, total=c.num_generations, unit='generation',
                       desc=f'train C in the {c.train_in} env (round {round_index})')
  try:
    for start in range(first, c.num_generations, c.eval_every):
      es_state, metrics = run(jax.device_put(es_state, training.replicated(mesh)),
                              key_generations, start)
      mean = es.get_mean(es_state)
      dream_returns, real_returns = score_dream(mean, eval_keys), score_real(mean, eval_keys)
      scores = {'mean_dream_return': float(dream_returns.mean()),
                'mean_real_return': float(real_returns.mean()),
                'mean_real_return_std': float(real_returns.std())}
      log_chunk(log, start, metrics, scores)
      training.check_finite(mean, 'C', start + c.eval_every, 'controller.sigma_init')
      manager.save(start + c.eval_every, args=ocp.args.StandardSave(es_state))
      progress.update(c.eval_every)
      progress.set_postfix(dream=f'{scores["mean_dream_return"]:.1f}',
                           real=f'{scores["mean_real_return"]:.1f}')
  finally:
    progress.close()
    manager.wait_until_finished()
  log.close()
  return training.last_metrics(out)


def restore_controller(config: ml_collections.ConfigDict, workdir: str, template,
                       round_index: int = 0) -> Any:
  """C's parameters (the CMA-ES mean) after `controller.num_generations` (refuses partial runs)."""
  check_trained(config, workdir, 'controller', round_index)
  es, es_params = make_strategy(config, template)
  abstract = jax.eval_shape(lambda: strong_types(es.init(jax.random.key(0), template, es_params)))
  es_state = training.restore_final(
      Workdir(workdir).checkpoints('controller', round_index),
      fingerprint(config, 'controller', round_index, checkpoints=True),
      config.controller.num_generations, 'C', 'controller.num_generations',
      producing_stage('controller', round_index),
      ocp.args.StandardRestore(training.abstract(abstract)))
  return es.get_mean(es_state)
