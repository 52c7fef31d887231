"""The paper's host environments, DoomTakeCover (ViZDoom) and CarRacing-v3 (gymnasium, Box2D),
with the paper's preprocessing; plain numpy, so worker processes import neither JAX nor gymnax.

A game has `reset(seed) -> frame`, `step(action) -> (frame, reward, terminated)` and
`random_action(rng)`; frames are [64, 64, 3] uint8:
- DoomTakeCover: ViZDoom's take_cover scenario, headless, rendered at 160x120 (the paper's
  VizDoom gym environment rendered 640x480: the same 4:3 view, 16x fewer pixels to draw). The
  top 5/6 of the rows are kept, as the paper's 400 of 480 (there the bottom sixth was the HUD;
  take_cover.cfg renders without one, and the crop keeps the paper's field of view), then the
  frame is resized to 64x64 (bilinear). Damage flashes are rendered, as in the paper's game.
  Actions 0 / 1 / 2 = left / no-op / right (buttons
  MOVE_LEFT, MOVE_RIGHT); reward 1 per frame survived, so the return is the paper's score.
- CarRacing-v3: 96x96 frames; rows 0..83 kept (the dashboard below is cropped, as the paper's),
  resized to 64x64 (bilinear). Actions [steer in [-1, 1], gas in [0, 1], brake in [0, 1]]. The
  environment is built without gymnasium's 1000-step TimeLimit: the episode cap is the caller's.
"""

from __future__ import annotations

import multiprocessing.util
import os
import signal
import sys
import tempfile

import numpy as np
from PIL import Image

FRAME_SIZE = 64
DOOM_KEPT_ROWS = 5 / 6
CARRACING_KEPT_ROWS = 84


def resize(frame: np.ndarray) -> np.ndarray:
  """[H, W, 3] uint8 -> [64, 64, 3] uint8 (bilinear)."""
  image = Image.fromarray(frame).resize((FRAME_SIZE, FRAME_SIZE), Image.BILINEAR)
  return np.asarray(image, np.uint8)


def doom_frame(screen: np.ndarray) -> np.ndarray:
  """A ViZDoom RGB screen [H, W, 3] -> [64, 64, 3]: the top 5/6 of the rows, resized."""
  return resize(screen[:round(screen.shape[0] * DOOM_KEPT_ROWS)])


def carracing_frame(observation: np.ndarray) -> np.ndarray:
  """A CarRacing observation [96, 96, 3] -> [64, 64, 3]: rows 0..83 (no dashboard), resized."""
  return resize(observation[:CARRACING_KEPT_ROWS])


class DoomTakeCover:
  """ViZDoom's take_cover scenario with the paper's three actions."""
  num_actions = 3
  _BUTTONS = ([1, 0], [0, 0], [0, 1])  # left, no-op, right over (MOVE_LEFT, MOVE_RIGHT)

  def __init__(self):
    import vizdoom  # Only where a game runs.

    game = vizdoom.DoomGame()
    game.load_config(os.path.join(vizdoom.scenarios_path, 'take_cover.cfg'))
    # ViZDoom writes its engine settings to _vizdoom.ini in the working directory by default.
    game.set_doom_config_path(os.path.join(tempfile.gettempdir(), '_vizdoom.ini'))
    game.set_window_visible(False)
    game.set_screen_resolution(vizdoom.ScreenResolution.RES_160X120)
    game.set_screen_format(vizdoom.ScreenFormat.RGB24)
    # The red flash of taking damage, rendered in the paper's game (screen flashes were on by
    # default then; take_cover.cfg now turns them off): the only sign in a frame of the hits
    # that end an episode, which M's done head has to predict.
    game.set_render_screen_flashes(True)
    game.init()
    self._game = game
    self._frame = None

  def reset(self, seed: int) -> np.ndarray:
    self._game.set_seed(int(seed))
    self._game.new_episode()
    self._frame = doom_frame(self._game.get_state().screen_buffer)
    return self._frame

  def step(self, action) -> tuple[np.ndarray, float, bool]:
    """The frame after the action (the last one seen once the episode is over)."""
    reward = self._game.make_action(self._BUTTONS[int(action)])
    terminated = self._game.is_episode_finished()
    if not terminated:
      self._frame = doom_frame(self._game.get_state().screen_buffer)
    return self._frame, float(reward), terminated

  def random_action(self, rng: np.random.Generator) -> np.int32:
    return np.int32(rng.integers(self.num_actions))

  def close(self):
    self._game.close()


class CarRacing:
  """gymnasium's CarRacing-v3, continuous actions, without the TimeLimit wrapper."""
  action_low = np.array([-1.0, 0.0, 0.0], np.float32)
  action_high = np.array([1.0, 1.0, 1.0], np.float32)

  def __init__(self):
    from gymnasium.envs.box2d.car_racing import CarRacing as Env  # Only where a game runs.

    self._env = Env(continuous=True)

  def reset(self, seed: int) -> np.ndarray:
    observation, _ = self._env.reset(seed=int(seed))
    return carracing_frame(observation)

  def step(self, action) -> tuple[np.ndarray, float, bool]:
    observation, reward, terminated, _, _ = self._env.step(np.asarray(action, np.float32))
    return carracing_frame(observation), float(reward), bool(terminated)

  def random_action(self, rng: np.random.Generator) -> np.ndarray:
    """A smooth random driver (the paper drove random-weight agents): steering anywhere, gas
    anywhere, the brake touched one period in ten; held for the collector's 1..k frames."""
    brake = rng.uniform() if rng.uniform() < 0.1 else 0.0
    return np.array([rng.uniform(-1.0, 1.0), rng.uniform(), brake], np.float32)

  def close(self):
    self._env.close()


GAMES = {'DoomTakeCover': DoomTakeCover, 'CarRacing-v3': CarRacing}


def make_game(name: str):
  if name not in GAMES:
    raise ValueError(f'No host game {name!r}; expected one of {tuple(GAMES)}.')
  return GAMES[name]()


def random_episode(game, seed: int, max_steps: int, max_action_repeat: int
                   ) -> dict[str, np.ndarray]:
  """One episode of the paper's random policy (a random action held for 1..k frames), as the
  collect stage's step arrays: frames[t] is the frame actions[t] was taken from."""
  rng = np.random.default_rng(seed)
  frame = game.reset(seed)
  steps = {name: [] for name in ('frames', 'actions', 'rewards', 'dones', 'terminals')}
  hold = 0
  for t in range(max_steps):
    if hold == 0:
      action, hold = game.random_action(rng), int(rng.integers(1, max_action_repeat + 1))
    hold -= 1
    next_frame, reward, terminated = game.step(action)
    done = terminated or t == max_steps - 1
    for name, value in (('frames', frame), ('actions', action), ('rewards', reward),
                        ('dones', done), ('terminals', terminated)):
      steps[name].append(value)
    frame = next_frame
    if done:
      break
  dtypes = {'frames': np.uint8, 'rewards': np.float32, 'dones': np.bool_, 'terminals': np.bool_}
  return {name: np.asarray(values, dtypes.get(name)) for name, values in steps.items()}


def serve(name: str, connection) -> None:
  """A worker process: owns games by slot and answers ('reset', [(slot, seed)]) and
  ('step', [(slot, action)]) with a list of results, until ('close', None)."""
  games = {}
  try:
    while True:
      command, items = connection.recv()
      if command == 'close':
        break
      try:
        for slot, _ in items:
          if slot not in games:
            games[slot] = make_game(name)
        result = [getattr(games[slot], command)(arg) for slot, arg in items]
      except Exception as error:  # Sent back, so the caller raises it with the game's message.
        result = error
      connection.send(result)
  finally:
    for game in games.values():
      game.close()


_WORKER_GAME = None


def init_collector(name: str) -> None:
  """Process-pool initializer for collection: one game per worker process, closed when the
  worker exits (ViZDoom runs each game in a process of its own), also when `Pool.terminate`
  stops it: SIGTERM exits through the process's finalizers instead of killing it outright."""
  global _WORKER_GAME
  _WORKER_GAME = make_game(name)
  multiprocessing.util.Finalize(None, _WORKER_GAME.close, exitpriority=10)
  signal.signal(signal.SIGTERM, _exit)


def _exit(signum, frame):
  del signum, frame
  sys.exit(0)


def collect_episode(args: tuple[int, int, int]) -> dict[str, np.ndarray]:
  """(seed, max_steps, max_action_repeat) -> a random-policy episode of this worker's game."""
  return random_episode(_WORKER_GAME, *args)
