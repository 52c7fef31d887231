"""Random-policy rollouts: of a gymnax environment entirely inside jit, or of a host game
(DoomTakeCover, CarRacing-v3) in parallel worker processes.

The policy is the paper's: a uniformly random action, held for a uniformly random 1..k frames.
One call collects a chunk of episodes: vmapped over episodes, a `lax.while_loop` over time that
stops when the chunk's longest episode ends (or at `max_steps`), writing into preallocated
[E, max_steps, ...] buffers. Steps after an episode's end are zero and masked by its length.

Per step t of an episode of length T (t < T): `frames[t]` is the observation the action was
taken from, `actions[t]`, `rewards[t]`, `dones[t]` (the episode ended after this step, by
termination or time limit) and `terminals[t]` (it ended by termination: what M's done head
predicts).

Host games (`wm_jax.envs.games`) run the same policy in worker processes that also write the
dataset (`wm_jax.data.host_collect`).
"""

from __future__ import annotations

import functools
import itertools
import time
from typing import Any, Iterator, Mapping

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import auto as tqdm
from flax import struct

from wm_jax.data import episodes as episodes_lib
from wm_jax.data import host_collect
from wm_jax.envs.pixels import HOST_ENVS


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
  for name, value in (('env.max_steps', max_steps),
                      ('collect.max_action_repeat', max_action_repeat)):
    if value < 1:
      raise ValueError(f'{name} must be >= 1, got {value}.')
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


def write_random_episodes(config, env, env_params, path: str, spec: episodes_lib.EpisodeSpec,
                          metadata: Mapping[str, Any]) -> list[int]:
  """Collects `collect.num_episodes` random-policy episodes of `env.name` (a gymnax env, or a
  host game) into the dataset at `path` (`wm_jax.data.episodes`). Returns their lengths."""
  if config.env.name in HOST_ENVS:
    return host_collect.write_host_episodes(config, path, spec, metadata)
  lengths = []
  progress = tqdm.tqdm(total=config.collect.num_episodes, desc=f'collect {config.env.name}',
                       unit='episode')
  episodes_lib.write_episodes(path, spec, _with_progress(
      gymnax_episodes(config, env, env_params), progress, lengths), metadata)
  progress.close()
  return lengths


def _with_progress(episodes: Iterator[dict[str, np.ndarray]], progress: tqdm.tqdm,
                   lengths: list[int]):
  """`episodes`, counted on `progress` and appended to `lengths`."""
  frames, start = 0, time.perf_counter()
  for episode in episodes:
    lengths.append(len(episode['frames']))
    frames += lengths[-1]
    progress.update(1)
    progress.set_postfix(frames=f'{frames:,}',
                         frames_per_s=f'{frames / (time.perf_counter() - start):.0f}')
    yield episode


def gymnax_episodes(config, env, env_params) -> Iterator[dict[str, np.ndarray]]:
  """`collect.num_episodes` episodes collected in jitted chunks of `collect.episodes_per_chunk`."""
  c = config.collect
  if c.min_steps > 1:
    raise ValueError(f'collect.min_steps={c.min_steps} is only for host games ({HOST_ENVS}); '
                     'gymnax collection keeps every episode.')
  collect = make_collect(env, env_params, config.env.max_steps, c.max_action_repeat)
  key = jax.random.fold_in(jax.random.key(config.seed), 0)
  for chunk, first in enumerate(range(0, c.num_episodes, c.episodes_per_chunk)):
    size = min(c.episodes_per_chunk, c.num_episodes - first)
    # The last chunk is collected at full size (one compiled shape) and cut.
    rollouts = collect(jax.random.fold_in(key, chunk), c.episodes_per_chunk)
    yield from itertools.islice(rollouts.episodes(), size)
