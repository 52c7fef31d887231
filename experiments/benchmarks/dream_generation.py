"""One Doom-sized CMA-ES generation in the dream: seconds, dream steps/s, FLOP/s, fraction of peak.

  python -m experiments.benchmarks.dream_generation [--population=64] [--rollouts=16]
      [--steps=2100] [--z_size=64] [--hidden_size=512] [--generations=2] [--out=FILE]

The defaults are the paper's DoomTakeCover sizes: M with z 64, a 512-unit LSTM, 5 Gaussians per
dimension, a done head and the restart flag (1,678,785 parameters, action fed as one number
in {-1, 0, 1}); C = tanh(w . [z, c, h]) split in thirds (1088 parameters); CMA-ES population 64 x
16 dream rollouts, each run for all 2100 steps (a fixed-length generation; done-masked returns).
M's parameters are random: the cost does not depend on their values.

FLOPs per dream step come from XLA's cost analysis of one compiled step of all population x
rollouts episodes (XLA counts a loop body once, so the generation's count is per step x steps);
the analytic count of the matmuls is printed beside it. The peak is the best large fp32 matmul
on the same device. The first call (compilation) is excluded; the median of the timed
generations is reported.
"""

import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from evosax.algorithms import CMA_ES
from gymnax.environments import spaces

from experiments.benchmarks.common import measured_matmul_flops, report
from wm_jax.world_models.dream import DreamEnv, DreamParams
from wm_jax.world_models.models.controller import LinearController, doom_action
from wm_jax.world_models.models.mdn_rnn import MDNRNN
from wm_jax.world_models.cmaes import make_generation, strong_types

_POPULATION = flags.DEFINE_integer('population', 64, 'CMA-ES population (paper: 64).')
_ROLLOUTS = flags.DEFINE_integer('rollouts', 16, 'Dream rollouts per candidate (paper: 16).')
_STEPS = flags.DEFINE_integer('steps', 2100, 'Steps per rollout (DoomTakeCover: 2100).')
_Z = flags.DEFINE_integer('z_size', 64, 'Latent size (Doom: 64).')
_HIDDEN = flags.DEFINE_integer('hidden_size', 512, 'LSTM units (Doom: 512).')
_GENERATIONS = flags.DEFINE_integer('generations', 2, 'Timed generations after the first.')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON here too.')


def doom_dream(z_size: int, hidden_size: int):
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
                       max_steps_in_episode=_STEPS.value)
  controller = LinearController(1, use_bias=False)
  template = controller.init(jax.random.key(2), jnp.zeros(dream.observation_space().shape))

  def policy(theta, observation, key):
    return doom_action(controller.apply(theta, observation))
  return dream, params, policy, template


def main(argv):
  del argv
  dream, params, policy, template = doom_dream(_Z.value, _HIDDEN.value)
  es = CMA_ES(population_size=_POPULATION.value, solution=template)
  es_params = es.default_params.replace(std_init=0.1)
  es_state = strong_types(es.init(jax.random.key(3), template, es_params))
  generation = jax.jit(make_generation(dream, params, policy, es, es_params, _ROLLOUTS.value,
                                       _STEPS.value, weight_decay=0.01))
  episodes = _POPULATION.value * _ROLLOUTS.value

  def one_step(thetas, observations, states, keys):  # All episodes' step: what a scan body does.
    actions = jax.vmap(policy)(thetas, observations, keys)
    return jax.vmap(dream.step, in_axes=(0, 0, 0, None))(keys, states, actions, params)
  keys = jax.random.split(jax.random.key(4), episodes)
  observations, states = jax.vmap(dream.reset, in_axes=(0, None))(keys, params)
  thetas = jax.tree.map(lambda x: jnp.broadcast_to(x, (episodes, *x.shape)), template)
  step_flops = float(jax.jit(one_step).lower(thetas, observations, states, keys).compile()
                     .cost_analysis()['flops']) / episodes
  inputs = _Z.value + 1 + 1  # z, action, restart flag
  analytic = 2 * (4 * _HIDDEN.value * (inputs + _HIDDEN.value)  # LSTM gates
                  + _HIDDEN.value * (3 * 5 * _Z.value + 1)  # mixture and done head
                  + template['params']['linear']['kernel'].size)  # C

  start = time.perf_counter()
  es_state, metrics = generation(es_state, jax.random.key(5))
  jax.block_until_ready(metrics)
  first = time.perf_counter() - start
  times = []
  for g in range(_GENERATIONS.value):
    start = time.perf_counter()
    es_state, metrics = generation(es_state, jax.random.key(6 + g))
    jax.block_until_ready(metrics)
    times.append(time.perf_counter() - start)
  seconds = float(np.median(times))
  dream_steps = episodes * _STEPS.value
  peak = measured_matmul_flops()
  result = {
      'population': _POPULATION.value, 'rollouts': _ROLLOUTS.value,
      'steps': _STEPS.value, 'z_size': _Z.value, 'hidden_size': _HIDDEN.value,
      'controller_params': int(template['params']['linear']['kernel'].size),
      'first_call_seconds_with_compile': first, 'seconds_per_generation': seconds,
      'timed_generations': times, 'dream_steps_per_generation': dream_steps,
      'dream_steps_per_s': dream_steps / seconds,
      'xla_flop_per_dream_step': step_flops, 'analytic_matmul_flop_per_dream_step': analytic,
      'achieved_gflop_per_s': step_flops * dream_steps / seconds / 1e9,
      'matmul_peak_gflop_per_s': peak / 1e9,
      'fraction_of_peak': step_flops * dream_steps / seconds / peak,
      'seconds_at_peak': step_flops * dream_steps / peak,
  }
  report(result, _OUT.value)


if __name__ == '__main__':
  app.run(main)
