"""One Doom-sized CMA-ES generation in the dream (run by `python -m experiments.benchmarks`).

The paper's DoomTakeCover sizes: M with z 64, a 512-unit LSTM, 5 Gaussians per dimension, a done
head and the restart flag (1,678,785 parameters, action fed as one number in {-1, 0, 1}); C =
tanh(w . [z, c, h]) split in thirds (1088 parameters); CMA-ES population 64 x 16 dream rollouts,
each run for all 2100 steps (a fixed-length generation; done-masked returns). M's parameters are
random: the cost does not depend on their values.

FLOPs per dream step come from XLA's cost analysis of one compiled step of all population x
rollouts episodes (XLA counts a loop body once, so the generation's count is per step x steps).
"""

import jax
import jax.numpy as jnp
from evosax.algorithms import CMA_ES
from gymnax.environments import spaces

from experiments.benchmarks.common import Row, compiled_flops, median_seconds
from wm_jax.world_models.dream import DreamEnv, DreamParams
from wm_jax.world_models.models.controller import LinearController, doom_action
from wm_jax.world_models.models.mdn_rnn import MDNRNN
from wm_jax.world_models.cmaes import make_generation, strong_types


def doom_dream(z_size: int, hidden_size: int, steps: int):
  """The Doom dream with random M parameters, C's policy and its zero template."""
  mdn = MDNRNN(z_size=z_size, action_size=1, hidden_size=hidden_size, use_restart=True,
               predict_done=True)
  mdn_params = mdn.init(jax.random.key(0), jnp.zeros((1, 1, z_size)), jnp.zeros((1, 1, 1)),
                        jnp.zeros((1, 1)))['params']
  dream = DreamEnv(mdn, spaces.Discrete(3), lambda a: (a.astype(jnp.float32) - 1.0)[None],
                   include_cell=True)
  initial = jax.random.normal(jax.random.key(1), (100, z_size))
  params = DreamParams(mdn_params=mdn_params, initial_mu=initial,
                       initial_logvar=jnp.full_like(initial, -2.0), temperature=1.15,
                       max_steps_in_episode=steps)
  controller = LinearController(1, use_bias=False)
  template = controller.init(jax.random.key(2), jnp.zeros(dream.observation_space().shape))

  def policy(theta, observation, key):
    return doom_action(controller.apply(theta, observation))
  return dream, params, policy, template


def dream_generation(population: int = 64, rollouts: int = 16, steps: int = 2100,
                     z_size: int = 64, hidden_size: int = 512, repeats: int = 2) -> Row:
  dream, params, policy, template = doom_dream(z_size, hidden_size, steps)
  es = CMA_ES(population_size=population, solution=template)
  es_params = es.default_params.replace(std_init=0.1)
  es_state = strong_types(es.init(jax.random.key(3), template, es_params))
  generation = jax.jit(make_generation(dream, params, policy, es, es_params, rollouts, steps,
                                       weight_decay=0.01))
  episodes = population * rollouts

  def one_step(thetas, observations, states, keys):  # All episodes' step: what a scan body does.
    actions = jax.vmap(policy)(thetas, observations, keys)
    return jax.vmap(dream.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)
  keys = jax.random.split(jax.random.key(4), episodes)
  observations, states = jax.vmap(dream.reset, in_axes=(0, None))(keys, params)
  thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (episodes, *x.shape)), template)
  step_flop = compiled_flops(jax.jit(one_step), thetas, observations, states, keys)
  seconds = median_seconds(lambda: generation(es_state, jax.random.key(5)), repeats)
  return Row('dream generation (CMA-ES)', f'{population} x {rollouts} rollouts x {steps} steps, '
             f'z {z_size}, LSTM {hidden_size}', 'dream steps/s', episodes * steps, seconds,
             step_flop * steps, 'one generation: ask, all rollouts, tell')
