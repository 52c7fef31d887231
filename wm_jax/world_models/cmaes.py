"""Training a controller with CMA-ES (evosax) in any gymnax environment, the dream included.

One generation is ONE jitted function: `es.ask` draws the population, every candidate is scored
on `num_rollouts` episodes (vmap over population x rollouts, `lax.scan` over time up to
`max_steps` with done-masking, so an episode's return stops at its first done), the fitness is
the mean return minus `weight_decay` x the squared L2 norm of the candidate (the paper's L2
penalty), and `es.tell` updates the search distribution (evosax minimises: it gets -fitness).
All candidates of a generation meet the same rollout keys (common random numbers).
`run_generations` chains generations in a `lax.scan`, so a chunk of generations between two
checkpoints is one compiled call.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

Policy = Callable[[Any, jax.Array, jax.Array], Any]  # (params, observation, key) -> env action


@struct.dataclass
class GenerationMetrics:
  mean_fitness: jax.Array
  best_fitness: jax.Array
  mean_return: jax.Array  # Population mean of the mean return over rollouts.
  best_return: jax.Array


def rollout(env, env_params, policy: Policy, theta, key: jax.Array, max_steps: int,
            record: Callable[..., Any] = lambda state, action, reward, terminated, truncated: None):
  """One episode of `policy(theta, ., .)` for `max_steps` steps of `lax.scan`.

  Returns (the return counted up to the first done, `record(state, action, reward, terminated,
  truncated)` of every step [max_steps, ...] (the state the action was taken from), alive
  [max_steps]: the step belongs to the episode). The policy's key is independent of the
  environment's step key.
  """
  key_reset, key_steps = jax.random.split(key)
  obs, state = env.reset(key_reset, env_params)

  def step(carry, key):
    obs, state, alive, total = carry
    action = policy(theta, obs, jax.random.fold_in(key, 1))
    next_obs, next_state, reward, terminated, truncated, _ = env.step(key, state, action,
                                                                      env_params)
    recorded = (record(state, action, reward, terminated, truncated), alive)
    total = total + jnp.where(alive, reward, 0.0)
    return (next_obs, next_state, alive & ~(terminated | truncated), total), recorded

  carry = (obs, state, jnp.array(True), jnp.float32(0.0))
  (_, _, _, total), (recorded, alive) = jax.lax.scan(step, carry,
                                                     jax.random.split(key_steps, max_steps))
  return total, recorded, alive


def episode_return(env, env_params, policy: Policy, theta, key: jax.Array,
                   max_steps: int) -> jax.Array:
  """The return of one episode of `policy(theta, ., .)`, counted up to its first done."""
  return rollout(env, env_params, policy, theta, key, max_steps)[0]


def make_generation(env, env_params, policy: Policy, es, es_params, num_rollouts: int,
                    max_steps: int, weight_decay: float,
                    population_sharding: jax.sharding.Sharding | None = None):
  """Returns `generation(es_state, key) -> (es_state, GenerationMetrics)` (jit it, or scan it).

  With `population_sharding` (a NamedSharding over the mesh's 'data' axis) the candidates are
  split over the devices; the search distribution's update then gathers their fitness.
  """

  def generation(es_state, key):
    key_ask, key_rollouts, key_tell = jax.random.split(key, 3)
    population, es_state = es.ask(key_ask, es_state, es_params)
    if population_sharding is not None:
      population = jax.lax.with_sharding_constraint(population, population_sharding)
    # Every candidate meets the same episodes (common random numbers), through its own copy of
    # the keys: with keys shared unbatched, vmap would trace a reset that does not depend on
    # theta once for all candidates, and a host game (HostEnv) would be one game they all step.
    keys = jax.random.split(key_rollouts, num_rollouts)
    keys = jnp.broadcast_to(keys, (jax.tree.leaves(population)[0].shape[0], num_rollouts))

    def candidate_returns(theta, keys):
      return jax.vmap(lambda k: episode_return(env, env_params, policy, theta, k, max_steps))(keys)

    returns = jax.vmap(candidate_returns)(population, keys).mean(axis=1)  # [population]
    l2 = sum(jnp.sum(jnp.square(x).reshape(x.shape[0], -1), axis=1)
             for x in jax.tree.leaves(population))
    fitness = returns - weight_decay * l2
    es_state, _ = es.tell(key_tell, population, -fitness, es_state, es_params)
    metrics = GenerationMetrics(mean_fitness=fitness.mean(), best_fitness=fitness.max(),
                                mean_return=returns.mean(), best_return=returns.max())
    return strong_types(es_state), metrics

  return generation


def strong_types(tree):
  """The same values with no weak types.

  evosax's init returns some weakly typed leaves that tell returns strongly typed; scan and jit
  treat the two as different types and would trace a generation again. Pass the state from
  `es.init` through this once.
  """
  return jax.tree.map(lambda x: jax.lax.convert_element_type(x, jnp.asarray(x).dtype), tree)


def run_generations(generation, es_state, key: jax.Array, first_generation, num_generations: int):
  """Generations first_generation .. + num_generations - 1 in one `lax.scan`; generation g uses
  fold_in(key, g), so a run split into chunks (between checkpoints) meets the same keys.

  Returns (es_state, GenerationMetrics with a leading [num_generations] axis).
  """
  indices = first_generation + jnp.arange(num_generations)
  return jax.lax.scan(generation, es_state, jax.vmap(lambda g: jax.random.fold_in(key, g))(indices))
