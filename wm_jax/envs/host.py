"""Host games (`wm_jax.envs.games`) as gymnax environments, stepped in parallel worker processes.

`HostEnv` is a gymnax `Environment` with [64, 64, 3] uint8 observations, like `PixelEnv`, so
the pipeline's stages (controller checks, evaluation, collection with C, the dream-vs-real GIF)
run on DoomTakeCover and CarRacing unchanged: jitted, vmapped over episodes, scanned over time.
Each reset or step is one `jax.pure_callback` with `vmap_method='broadcast_all'`: under vmap
the callback receives the whole batch of episodes at once, and the host steps their games in
`num_workers` processes in parallel. (`io_callback` would be the textbook choice for side
effects, but under vmap it runs one episode at a time.) The callback results are always
consumed, and every step passes the previous step's returned time, so calls cannot be dropped
or reordered.

Differences from a JAX-native environment, all enforced:
- No auto-reset: a terminated episode's later steps are free no-ops that return its last frame
  with reward 0 and done (`wm_jax.world_models.cmaes.rollout` counts up to the first done anyway). The
  time limit is the caller's (`is_truncated`; a wrapper's own limit governs a wrapper): the game
  is stepped until it terminates or the rollout ends. `step_without_reset` provides the same for wrappers (`LatentEnv`).
- One batch of episodes at a time: a reset starts a new batch (of the vmapped size) and steps
  of an older batch raise an error.
- The frames live in the state (`state.frame`), so `render` works as for `PixelEnv`.
Episode seeds are drawn from the reset key, so a batch is reproducible, and the same as a plain
loop over `games.make_game(name).reset(seed)` with those seeds.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from gymnax.environments import environment, spaces

from wm_jax.envs import games


@struct.dataclass
class HostState(environment.EnvState):
  slot: jax.Array  # int32: the episode's game in the current batch
  batch: jax.Array  # int32: which reset created it (stale batches are refused)
  frame: jax.Array  # [64, 64, 3] uint8: the current observation
  terminated: jax.Array  # bool
  time: jax.Array  # int32: steps taken


@struct.dataclass
class HostParams(environment.EnvParams):
  max_steps_in_episode: int = 1000


def reset_seed(key: jax.Array) -> jax.Array:
  """The game seed a HostEnv reset draws from its key (int32 in [0, 2^31 - 1))."""
  return jax.random.randint(key, (), 0, np.iinfo(np.int32).max, jnp.int32)


class _GamePool:
  """Games by slot, in `num_workers` processes (0: in this process); slot i lives in worker
  i mod num_workers. Started on first use; one batch of episodes at a time."""

  def __init__(self, name: str, num_workers: int):
    self.name = name
    self.num_workers = num_workers
    self._connections, self._processes = None, []
    self._local = {}
    self.batch = -1
    self._done = np.zeros(0, bool)
    self._frames = np.zeros((0, games.FRAME_SIZE, games.FRAME_SIZE, 3), np.uint8)

  def _start(self):
    context = multiprocessing.get_context('spawn')  # fork is unsafe after JAX starts threads
    self._connections, self._processes = [], []
    for _ in range(self.num_workers):
      parent, child = context.Pipe()
      process = context.Process(target=games.serve, args=(self.name, child), daemon=True)
      process.start()
      self._connections.append(parent)
      self._processes.append(process)
    atexit.register(self.close)  # Workers close their games (ViZDoom runs one process each).

  def _call(self, command: str, items: list[tuple[int, Any]]) -> list[Any]:
    """Runs (slot, argument) items on their games, the workers in parallel; results in order."""
    if self.num_workers == 0:
      for slot, _ in items:
        if slot not in self._local:
          self._local[slot] = games.make_game(self.name)
      return [getattr(self._local[slot], command)(arg) for slot, arg in items]
    if self._connections is None:
      self._start()
    shards = [[item for item in items if item[0] % self.num_workers == w]
              for w in range(self.num_workers)]
    for connection, shard in zip(self._connections, shards):
      if shard:
        connection.send((command, shard))
    results = {}
    for connection, shard in zip(self._connections, shards):
      if shard:
        answer = connection.recv()
        if isinstance(answer, Exception):
          raise RuntimeError(f'{self.name} worker failed on {command}') from answer
        results.update(zip((slot for slot, _ in shard), answer))
    return [results[slot] for slot, _ in items]

  def reset(self, seeds: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """A new batch of len(seeds) episodes: (slots [N], frames [N, 64, 64, 3], batch id)."""
    self.batch += 1
    slots = np.arange(len(seeds), dtype=np.int32)
    self._frames = np.stack(self._call('reset', list(zip(slots.tolist(), seeds.tolist()))))
    self._done = np.zeros(len(seeds), bool)
    return slots, self._frames.copy(), self.batch

  def step(self, slots: np.ndarray, batch: np.ndarray, actions: np.ndarray):
    """Steps the unfinished episodes: (frames [N, 64, 64, 3], rewards [N], terminated [N])."""
    if np.any(batch != self.batch):
      raise RuntimeError(f'{self.name}: a step of an episode batch that a later reset replaced '
                         '(a HostEnv runs one batch of episodes at a time).')
    if len(np.unique(slots)) < len(slots):
      raise RuntimeError(
          f'{self.name}: episodes of one step share a game: the reset was vmapped over fewer '
          'axes than the step (a reset key shared unbatched across an axis such as a CMA-ES '
          'population); give every episode its own reset key, e.g. broadcast the keys over '
          'that axis.')
    rewards = np.zeros(len(slots), np.float32)
    live = [i for i, slot in enumerate(slots) if not self._done[slot]]
    results = self._call('step', [(int(slots[i]), actions[i]) for i in live])
    for i, (frame, reward, terminated) in zip(live, results):
      self._frames[slots[i]], rewards[i] = frame, reward
      self._done[slots[i]] = terminated
    return self._frames[slots], rewards, self._done[slots]

  def close(self):
    for connection in self._connections or ():
      connection.send(('close', None))
    for process in self._processes:
      process.join(timeout=10)
    self._connections, self._processes = None, []
    for game in self._local.values():
      game.close()
    self._local = {}


class HostEnv(environment.Environment):
  """A host game as a gymnax environment with [64, 64, 3] uint8 observations (no auto-reset)."""
  auto_reset = False

  def __init__(self, name: str, num_workers: int | None = None):
    super().__init__()
    if name not in games.GAMES:
      raise ValueError(f'No host environment {name!r}; expected one of {tuple(games.GAMES)}.')
    self.game_name = name
    self.pool = _GamePool(name, os.cpu_count() if num_workers is None else num_workers)

  @property
  def default_params(self) -> HostParams:
    return HostParams()

  def reset_env(self, key, params: HostParams):
    seed = reset_seed(key)

    def host_reset(seeds):
      slots, frames, batch = self.pool.reset(np.asarray(seeds).reshape(-1))
      shape = np.shape(seeds)
      return (slots.reshape(shape), np.full(shape, batch, np.int32),
              frames.reshape(*shape, *frames.shape[1:]))

    frame_type = jax.ShapeDtypeStruct((games.FRAME_SIZE, games.FRAME_SIZE, 3), jnp.uint8)
    slot, batch, frame = jax.pure_callback(
        host_reset, (jax.ShapeDtypeStruct((), jnp.int32), jax.ShapeDtypeStruct((), jnp.int32),
                     frame_type), seed, vmap_method='broadcast_all')
    state = HostState(slot=slot, batch=batch, frame=frame, terminated=jnp.array(False),
                      time=jnp.int32(0))
    return frame, state

  def step_env(self, key, state: HostState, action, params: HostParams):
    action = jnp.asarray(action, self.action_space(params).dtype)

    def host_step(slots, batch, actions, times):
      shape = np.shape(slots)
      slots, batch = np.asarray(slots).reshape(-1), np.asarray(batch).reshape(-1)
      actions = np.asarray(actions).reshape(len(slots), *np.shape(actions)[len(shape):])
      frames, rewards, terminated = self.pool.step(slots, batch, actions)
      return (frames.reshape(*shape, *frames.shape[1:]), rewards.reshape(shape),
              terminated.reshape(shape), (np.asarray(times) + 1).astype(np.int32))

    frame, reward, terminated, time = jax.pure_callback(
        host_step, (jax.ShapeDtypeStruct(state.frame.shape, jnp.uint8),
                    jax.ShapeDtypeStruct((), jnp.float32), jax.ShapeDtypeStruct((), jnp.bool_),
                    jax.ShapeDtypeStruct((), jnp.int32)),
        state.slot, state.batch, action, state.time, vmap_method='broadcast_all')
    state = state.replace(frame=frame, terminated=terminated, time=time)
    return frame, state, reward, terminated, {}

  def step(self, key, state, action, params=None):
    return step_without_reset(self, key, state, action, params)

  def render(self, state: HostState, params=None) -> jax.Array:
    return state.frame

  def is_terminated(self, state: HostState, params) -> jax.Array:
    return state.terminated

  def is_truncated(self, state: HostState, params) -> jax.Array:
    return state.time >= params.max_steps_in_episode

  @property
  def name(self) -> str:
    return self.game_name

  @property
  def num_actions(self) -> int:
    """Discrete actions, or the length of a continuous action."""
    space = self.action_space()
    return space.n if isinstance(space, spaces.Discrete) else space.shape[0]

  def action_space(self, params=None):
    if self.game_name == 'DoomTakeCover':
      return spaces.Discrete(games.DoomTakeCover.num_actions)
    return spaces.Box(jnp.asarray(games.CarRacing.action_low),
                      jnp.asarray(games.CarRacing.action_high), (3,), jnp.float32)

  def observation_space(self, params=None):
    return spaces.Box(0, 255, (games.FRAME_SIZE, games.FRAME_SIZE, 3), jnp.uint8)

  def close(self):
    self.pool.close()


def step_without_reset(env: environment.Environment, key, state, action, params=None):
  """gymnax's `Environment.step` without the auto-reset (for environments over a HostEnv):
  (obs, state, reward, terminated, truncated, info)."""
  params = env.default_params if params is None else params
  obs, state, reward, terminated, info = env.step_env(key, state, action, params)
  truncated = env.is_truncated(state, params)
  info = {**info, 'terminated': terminated, 'truncated': truncated, 'final_observation': obs}
  return obs, state, reward, terminated, truncated, info
