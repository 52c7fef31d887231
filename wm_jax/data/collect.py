"""Random-policy rollouts of a gymnax environment, collected entirely inside jit.

The policy is the paper's: a uniformly random action, held for a uniformly random 1..k frames.
One call collects a chunk of episodes: vmapped over episodes, a `lax.while_loop` over time that
stops when the chunk's longest episode ends (or at `max_steps`), writing into preallocated
[E, max_steps, ...] buffers. Steps after an episode's end are zero and masked by its length.

Per step t of an episode of length T (t < T): `frames[t]` is the observation the action was
taken from, `actions[t]`, `rewards[t]`, `dones[t]` (the episode ended after this step, by
termination or time limit) and `terminals[t]` (it ended by termination: what M's done head
predicts).
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from typing import Iterator

import jax
import jax.numpy as jnp
import numpy as np
import tqdm
from flax import struct

from wm_jax.config import check_same, fingerprint
from wm_jax.data.episodes import is_complete, read_metadata, write_episodes
from wm_jax.envs.pixels import make_pixel_env


@struct.dataclass
class Rollouts:
  """A chunk of episodes: step arrays [E, max_steps, ...] and `lengths` [E]."""
  frames: jax.Array
  actions: jax.Array
  rewards: jax.Array
  dones: jax.Array
  terminals: jax.Array
  lengths: jax.Array

  def episodes(self) -> Iterator[dict[str, np.ndarray]]:
    """The episodes as numpy dicts, each cut to its length (copies to the host once)."""
    host = jax.device_get(self)
    for e, length in enumerate(host.lengths):
      yield {name: getattr(host, name)[e, :length]
             for name in ('frames', 'actions', 'rewards', 'dones', 'terminals')}


def make_collect(env, env_params, max_steps: int, max_action_repeat: int):
  """Returns jitted `collect(key, num_episodes) -> Rollouts` (num_episodes is static)."""
  for name, value in (('max_steps', max_steps), ('max_action_repeat', max_action_repeat)):
    if value < 1:
      raise ValueError(f'collect.{name} must be >= 1, got {value}.')
  env_params = env_params.replace(max_steps_in_episode=max_steps)
  action_space = env.action_space(env_params)

  def initial_carry(key):
    key_reset, key_loop = jax.random.split(key)
    obs, state = env.reset(key_reset, env_params)
    action0 = action_space.sample(key_reset)  # A placeholder: hold=0 resamples at t=0.

    def buffer(x):
      return jnp.zeros((max_steps, *jnp.shape(x)), jnp.asarray(x).dtype)

    buffers = dict(frames=buffer(obs), actions=buffer(action0), rewards=buffer(jnp.float32(0)),
                   dones=buffer(False), terminals=buffer(False))
    return dict(t=0, key=key_loop, obs=obs, state=state, action=action0, hold=0, alive=True,
                buffers=buffers)

  def step(carry):
    key, key_action, key_hold, key_step = jax.random.split(carry['key'], 4)
    resample = carry['hold'] <= 0
    action = jnp.where(resample, action_space.sample(key_action), carry['action'])
    hold = jnp.where(resample, jax.random.randint(key_hold, (), 1, max_action_repeat + 1),
                     carry['hold']) - 1
    obs, state, reward, terminated, truncated, _ = env.step(key_step, carry['state'], action,
                                                            env_params)
    alive = carry['alive']
    record = dict(frames=carry['obs'], actions=action, rewards=reward.astype(jnp.float32),
                  dones=terminated | truncated, terminals=terminated)
    buffers = {name: carry['buffers'][name].at[carry['t']].set(
        jnp.where(alive, record[name], jnp.zeros_like(record[name]))) for name in record}
    return dict(t=carry['t'] + 1, key=key, obs=obs, state=state, action=action, hold=hold,
                alive=alive & ~(terminated | truncated), buffers=buffers)

  @functools.partial(jax.jit, static_argnums=1)
  def collect(key, num_episodes: int) -> Rollouts:
    carry = jax.vmap(initial_carry)(jax.random.split(key, num_episodes))
    batched_step = jax.vmap(step)

    def keep_going(carry):
      return (carry['t'][0] < max_steps) & jnp.any(carry['alive'])

    carry = jax.lax.while_loop(keep_going, batched_step, carry)
    lengths = jnp.sum(jnp.cumprod(~carry['buffers']['dones'], axis=1), axis=1) + 1
    return Rollouts(lengths=jnp.minimum(lengths, max_steps).astype(jnp.int32), **carry['buffers'])

  return collect


def rollouts_path(workdir: str) -> str:
  return os.path.join(os.path.abspath(workdir), 'data', 'rollouts')


def collect_dataset(config, workdir: str) -> str:
  """Collects `config.collect.num_episodes` random-policy episodes into a TFDS dataset.

  Skips the work if the dataset is complete (after checking it was made with this config).
  Returns the dataset's path.
  """
  path = rollouts_path(workdir)
  meta = fingerprint(config, ('env', 'collect'), ignore=('collect.episodes_per_chunk',))
  meta['seed'] = config.seed
  if is_complete(path):
    check_same(read_metadata(path), meta, f'The rollout dataset in {path}')
    return path

  c = config.collect
  if c.num_episodes < 1 or c.episodes_per_chunk < 1:
    raise ValueError('collect.num_episodes and collect.episodes_per_chunk must be >= 1, got '
                     f'{c.num_episodes} and {c.episodes_per_chunk}.')
  env, env_params = make_pixel_env(config.env.name)
  collect = make_collect(env, env_params, c.max_steps, c.max_action_repeat)
  key = jax.random.fold_in(jax.random.key(config.seed), 0)
  action = jax.eval_shape(lambda k: env.action_space(env_params).sample(k), key)
  spec = {'frames': ((64, 64, 3), np.uint8), 'actions': (action.shape, action.dtype),
          'rewards': ((), np.float32), 'dones': ((), np.bool_), 'terminals': ((), np.bool_)}

  def episodes():
    progress = tqdm.tqdm(total=c.num_episodes, desc=f'collect {config.env.name}', unit='episode')
    frames, start = 0, time.perf_counter()
    for chunk, first in enumerate(range(0, c.num_episodes, c.episodes_per_chunk)):
      size = min(c.episodes_per_chunk, c.num_episodes - first)
      # The last chunk is collected at full size (one compiled shape) and cut.
      rollouts = collect(jax.random.fold_in(key, chunk), c.episodes_per_chunk)
      for episode in itertools.islice(rollouts.episodes(), size):
        frames += len(episode['frames'])
        yield episode
      progress.update(size)
      progress.set_postfix(frames=frames, frames_per_s=f'{frames / (time.perf_counter() - start):.0f}')
    progress.close()

  write_episodes(path, spec, episodes(), meta)
  return path
