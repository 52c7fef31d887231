"""Training C with CMA-ES entirely inside M's dream (or, with `controller.train_in='real'`, in
the real environment as the paper's CarRacing C), scored in the dream and the real environment.

The controller stage loads the trained V and M, builds the dream (`DreamEnv`: M sampled at
`controller.temperature` from the stored first-frame encodings) and the real environment as C
sees it (`LatentEnv`: pixel frames through V and M), and runs evosax's CMA-ES with the paper's
settings. Generations run in jitted `lax.scan` chunks of `controller.eval_every`; after each
chunk the current mean is scored on `controller.eval_episodes` dream episodes and as many real
ones (the real score is only watched, never used for selection), the metrics are logged and the
CMA-ES state is checkpointed with orbax, so a killed run resumes and ends where an uninterrupted
run would (generation g always meets the key fold_in(key, g)).
"""

from __future__ import annotations

import functools
import os
from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import tqdm
from evosax.algorithms import CMA_ES

from wm_jax.common.config import fingerprint
from wm_jax.world_models.dream import DreamEnv, DreamParams
from wm_jax.world_models.latent_env import LatentEnv, LatentParams
from wm_jax.envs.pixels import make_pixel_env
from wm_jax.world_models.models.controller import make_controller
from wm_jax.common import training
from wm_jax.world_models.stages import mdn, vae
from wm_jax.world_models.cmaes import episode_return, make_generation, run_generations, strong_types

RESUMABLE_KEYS = ('controller.num_generations',)


class World(NamedTuple):
  """Everything C acts in, built from a workdir's trained V and M."""
  dream: DreamEnv
  dream_params: DreamParams
  real: LatentEnv
  real_params: LatentParams
  policy: Any  # (controller params, observation, key) -> action
  template: Any  # C's parameters at their initial value (zero): CMA-ES's solution template
  vae_params: Any


def build_world(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0) -> World:
  """Loads V, the initial latents and round `round_index`'s M from `workdir` and builds the dream
  and the real environment."""
  env, env_params = make_pixel_env(config.env.name, config.env.num_workers)
  space = env.action_space(env_params)
  features = mdn.make_action_features(config)
  mdn_model = mdn.make_model(config, mdn.input_action_size(config))
  mdn_params = mdn.restore_params(config, workdir, round_index)
  vae_params = vae.restore_params(config, workdir)
  initial = np.load(vae.initial_latents_path(workdir))
  dream = DreamEnv(mdn_model, space, features, include_cell=config.controller.include_cell)
  dream_params = DreamParams(
      mdn_params=mdn_params, initial_mu=jnp.asarray(initial['mu']),
      initial_logvar=jnp.asarray(initial['logvar']), temperature=config.controller.temperature,
      sample_done=config.controller.sample_done, max_steps_in_episode=config.controller.max_steps)
  real = LatentEnv(env, vae.make_model(config), mdn_model, features,
                   include_cell=config.controller.include_cell)
  real_params = LatentParams(env_params=env_params, vae_params=vae_params, mdn_params=mdn_params,
                             sample_z=config.controller.sample_z,
                             max_steps_in_episode=config.evaluate.max_steps)
  controller, policy = make_controller(space, config.controller.action_map)
  template = controller.init(jax.random.key(0), jnp.zeros(dream.observation_space().shape))
  return World(dream, dream_params, real, real_params, policy, template, vae_params)


def make_scorer(env, env_params, policy, max_steps: int):
  """Jitted `score(theta, keys [N]) -> returns [N]`: one episode per key, vmapped."""
  return jax.jit(jax.vmap(
      lambda theta, key: episode_return(env, env_params, policy, theta, key, max_steps),
      in_axes=(None, 0)))


def controller_fingerprint(config: ml_collections.ConfigDict, round_index: int = 0
                           ) -> dict[str, Any]:
  """What round `round_index`'s C depends on (`controller.sample_z` only changes the real-env
  scores, so C is reused across it)."""
  meta = mdn.mdn_fingerprint(config, round_index)
  meta.update(fingerprint(config, ('mdn', 'controller'),
                          ignore=mdn.MONITORING_KEYS + RESUMABLE_KEYS + ('controller.sample_z',)))
  return meta


def make_strategy(config: ml_collections.ConfigDict, template):
  """evosax's CMA-ES with the config's population and initial sigma: (es, es_params)."""
  es = CMA_ES(population_size=config.controller.population_size, solution=template)
  return es, es.default_params.replace(std_init=config.controller.sigma_init)


def checkpoint_dir(workdir: str, round_index: int = 0) -> str:
  return os.path.join(training.round_dir(workdir, round_index), 'controller', 'checkpoints')


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0
                       ) -> Any:
  """Runs `controller.num_generations` generations in the dream of round `round_index`'s M,
  resuming from the last checkpoint. Returns the CMA-ES mean (C's parameters)."""
  c = config.controller
  if c.train_in not in ('dream', 'real'):
    raise ValueError(f"controller.train_in must be 'dream' or 'real', got {c.train_in!r}.")
  if c.num_generations % c.eval_every:
    raise ValueError(f'controller.num_generations={c.num_generations} must be a multiple of '
                     f'controller.eval_every={c.eval_every} (one compiled chunk size).')
  world = build_world(config, workdir, round_index)
  mesh = training.make_mesh(config.mesh.data)
  es, es_params = make_strategy(config, world.template)
  key = jax.random.fold_in(jax.random.fold_in(jax.random.key(config.seed), 3), round_index)
  key_init, key_generations, key_eval = jax.random.split(key, 3)
  es_state = strong_types(es.init(key_init, world.template, es_params))
  manager = training.checkpoint_manager(checkpoint_dir(workdir, round_index),
                                      controller_fingerprint(config, round_index))
  log = training.MetricsLog(os.path.join(training.round_dir(workdir, round_index), 'controller'))
  first = 0
  if manager.latest_step() is not None:
    first = manager.latest_step()
    es_state = manager.restore(first, args=ocp.args.StandardRestore(training.abstract(es_state)))

  if c.train_in == 'dream':
    env, env_params = world.dream, world.dream_params
  else:  # Every candidate's rollouts are real episodes (the paper's CarRacing C).
    env, env_params = world.real, world.real_params.replace(max_steps_in_episode=c.max_steps)
  generation = make_generation(env, env_params, world.policy, es, es_params,
                               c.num_rollouts, c.max_steps, c.weight_decay,
                               training.data_sharding(mesh, c.population_size))
  chex.clear_trace_counter()  # See wm_jax.world_models.stages.vae.jit_train_step.
  run = jax.jit(functools.partial(run_generations, chex.assert_max_traces(generation, n=1),
                                  num_generations=c.eval_every), donate_argnums=0)
  eval_keys = jax.random.split(key_eval, c.eval_episodes)
  score_dream = make_scorer(world.dream, world.dream_params.replace(
      max_steps_in_episode=config.evaluate.max_steps), world.policy, config.evaluate.max_steps)
  score_real = make_scorer(world.real, world.real_params, world.policy, config.evaluate.max_steps)

  progress = tqdm.tqdm(initial=first, total=c.num_generations,
                       desc=f'train C in the {c.train_in} env (round {round_index})',
                       unit='generation')
  for start in range(first, c.num_generations, c.eval_every):
    es_state, metrics = run(jax.device_put(es_state, training.replicated(mesh)), key_generations,
                            start)
    mean = es.get_mean(es_state)
    dream_returns, real_returns = score_dream(mean, eval_keys), score_real(mean, eval_keys)
    end = start + c.eval_every
    metrics = jax.device_get(metrics)
    for i in range(c.eval_every):  # Per-generation population statistics.
      log.write(start + i + 1, {f'population/{k}': float(getattr(metrics, k)[i])
                                for k in ('mean_return', 'best_return', 'mean_fitness')})
    scores = {'mean_dream_return': float(dream_returns.mean()),
              'mean_real_return': float(real_returns.mean()),
              'mean_real_return_std': float(real_returns.std())}
    log.write(end, scores)
    if not np.isfinite(metrics.mean_fitness).all():
      raise FloatingPointError(f'CMA-ES fitness is not finite by generation {end}.')
    manager.save(end, args=ocp.args.StandardSave(es_state))
    progress.update(c.eval_every)
    progress.set_postfix(dream=f'{scores["mean_dream_return"]:.1f}',
                         real=f'{scores["mean_real_return"]:.1f}')
  progress.close()
  manager.wait_until_finished()
  log.close()
  return es.get_mean(es_state)


def restore_controller(config: ml_collections.ConfigDict, workdir: str, template,
                       round_index: int = 0) -> Any:
  """C's parameters (the CMA-ES mean) after `controller.num_generations` (refuses partial runs)."""
  es, es_params = make_strategy(config, template)
  abstract = jax.eval_shape(lambda: strong_types(es.init(jax.random.key(0), template, es_params)))
  es_state = training.restore_final(
      checkpoint_dir(workdir, round_index), controller_fingerprint(config, round_index),
      config.controller.num_generations, 'C', 'controller.num_generations',
      'controller' if round_index == 0 else 'iterate',
      ocp.args.StandardRestore(training.abstract(abstract)))
  return es.get_mean(es_state)
