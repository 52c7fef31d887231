"""M's train step and the real-environment rollout (run by `python -m experiments.benchmarks`).

M: one Adam step of the MDN-RNN on `num_streams` sequences of `chunk_length` steps (one chunk of
`mdn.train_epoch`, as the trainer jits and places it), on random latents. XLA's cost analysis
counts a loop body once and the LSTM runs in `lax.scan` over time, so M's FLOPs are counted by
hand: 3 x the forward matmuls (forward, and a backward of twice its cost).

The real-environment rollout: C's episodes in pixel CartPole seen through V and M (`LatentEnv`:
render 64x64, encode with V, step M), vmapped over episodes and run for `env.max_steps` steps in
`lax.scan`, as the controller stage scores C; FLOPs from XLA's cost analysis of one step of all
episodes, times the steps. That count includes the work gymnax's auto-reset does on every step
(a reset observation rendered and encoded, kept only where an episode ends): executed work,
not only useful work.
"""

import jax
import jax.numpy as jnp
import numpy as np

from experiments.benchmarks.common import Row, compiled_flops, median_seconds, median_step_seconds
from wm_jax.common import training
from wm_jax.world_models import configs
from wm_jax.world_models.stages import controller, mdn, vae
from wm_jax.world_models.world import build_world


def m_train_step(config_name: str = 'doom_take_cover', num_streams: int | None = None,
                 repeats: int = 3, dtype: str = 'float32') -> Row:
  """One Adam step of the M of a packaged config (default: the paper's Doom M, z 64, LSTM 512,
  `mdn.num_streams` 100 streams of 500 steps), computing in `dtype`."""
  config = configs.get(config_name)
  m = config.mdn
  m.model.dtype = dtype
  if num_streams:
    m.num_streams = num_streams
  steps = m.num_streams * m.chunk_length
  rng = np.random.default_rng(0)
  state = mdn.create_train_state(config, jax.random.PRNGKey(0))
  action_size = state.params['rnn']['lstm']['ii']['kernel'].shape[0] - config.vae.model.z_size - 1
  data = mdn.Sequences(
      mu=rng.normal(size=(steps, config.vae.model.z_size)).astype(np.float32),
      logvar=np.full((steps, config.vae.model.z_size), -2.0, np.float32),
      actions=rng.normal(size=(steps, action_size)).astype(np.float32),
      restarts=(np.arange(steps) % m.chunk_length == 0).astype(np.float32),
      has_next=np.ones(steps, np.float32), terminals=np.zeros(steps, np.float32),
      rewards=np.zeros(steps, np.float32))
  index = np.arange(steps).reshape(m.num_streams, 1, m.chunk_length)
  mesh = training.make_mesh(config.mesh.data)
  epoch = mdn.jit_train_epoch(config, mesh)
  data = jax.device_put(data, training.replicated(mesh))
  index = jax.device_put(index, training.data_sharding(mesh, m.num_streams))
  state = jax.device_put(state, training.replicated(mesh))
  seconds = median_step_seconds(lambda state, index: epoch(state, data, index, jax.random.key(0)),
                                state, index, repeats)
  kernels = sum(leaf.size for path, leaf in jax.tree_util.tree_leaves_with_path(state.params)
                if path[-1].key == 'kernel')
  return Row(f'M train step ({dtype})', f'{m.num_streams} x {m.chunk_length} steps, z '
             f'{config.vae.model.z_size}, LSTM {m.model.hidden_size}', 'steps/s', steps,
             seconds, 3 * 2 * kernels * steps, 'FLOPs: 3 x forward matmuls, counted by hand')


def real_rollout(num_episodes: int = 64, repeats: int = 3) -> Row:
  """C's episodes of the default config's pixel CartPole through V and M (z 32, LSTM 256),
  500 steps each."""
  config = configs.get('default')
  max_steps = config.env.max_steps
  key_v, key_m, key_episodes = jax.random.split(jax.random.key(0), 3)
  z = config.vae.model.z_size
  world = build_world(config, vae.create_train_state(config, key_v).params,
                      mdn.create_train_state(config, key_m).params,
                      {'mu': np.zeros((1, z), np.float32), 'logvar': np.zeros((1, z), np.float32)})
  score = controller.make_scorer(world.real, world.real_params, world.policy, max_steps)
  keys = jax.random.split(key_episodes, num_episodes)
  seconds = median_seconds(lambda: score(world.template, keys), repeats)

  def one_step(keys, states, actions):  # All episodes' step: what the scan body does.
    return jax.vmap(world.real.step, in_axes=(0, 0, 0, None))(keys, states, actions,
                                                               world.real_params)
  _, states = jax.vmap(world.real.reset, in_axes=(0, None))(keys, world.real_params)
  actions = jnp.zeros((num_episodes,), jnp.int32)
  step_flop = compiled_flops(jax.jit(one_step), keys, states, actions)
  return Row('real-env rollout (pixel CartPole via V, M)', f'{num_episodes} episodes x '
             f'{max_steps} steps, z {z}, LSTM {config.mdn.model.hidden_size}', 'env steps/s',
             num_episodes * max_steps, seconds, step_flop * max_steps,
             'render, encode with V, step M; FLOPs include the auto-reset computed every step')
