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

Policy = Callable[[Any, jax.Array], Any]  # (controller params, observation) -> env action


@struct.dataclass
class GenerationMetrics:
  mean_fitness: jax.Array
  best_fitness: jax.Array
  mean_return: jax.Array  # Population mean of the mean return over rollouts.
  best_return: jax.Array


def episode_return(env, env_params, policy: Policy, theta, key: jax.Array,
                   max_steps: int) -> jax.Array:
  """The return of one episode of `policy(theta, .)`, counted up to its first done."""
  key_reset, key_steps = jax.random.split(key)
  obs, state = env.reset(key_reset, env_params)

  def step(carry, key):
    obs, state, alive, total = carry
    obs, state, reward, terminated, truncated, _ = env.step(key, state, policy(theta, obs),
                                                            env_params)
    total = total + jnp.where(alive, reward, 0.0)
    return (obs, state, alive & ~(terminated | truncated), total), None

  carry = (obs, state, jnp.array(True), jnp.float32(0.0))
  (_, _, _, total), _ = jax.lax.scan(step, carry, jax.random.split(key_steps, max_steps))
  return total


def make_generation(env, env_params, policy: Policy, es, es_params, num_rollouts: int,
                    max_steps: int, weight_decay: float):
  """Returns `generation(es_state, key) -> (es_state, GenerationMetrics)` (jit it, or scan it)."""

  def generation(es_state, key):
    key_ask, key_rollouts, key_tell = jax.random.split(key, 3)
    population, es_state = es.ask(key_ask, es_state, es_params)
    keys = jax.random.split(key_rollouts, num_rollouts)

    def candidate_returns(theta):
      return jax.vmap(lambda k: episode_return(env, env_params, policy, theta, k, max_steps))(keys)

    returns = jax.vmap(candidate_returns)(population).mean(axis=1)  # [population]
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
