"""What a pixel CartPole workdir's V and M know of the true state, and how C's real episodes end.

  python -m experiments.analysis.probe_cartpole_state --workdir=runs/cartpole [--config=...]

Prints:
- V: R^2 of linear fits (ridge, fit on 80% of the frames, scored on the rest) of the cart
  position x and the pole angle theta from V's posterior mean mu and from a sampled
  z ~ N(mu, sigma), on frames of uniformly random actions; the pole angle's error in degrees.
  The sampled z's is the telling one: even an untrained encoder's mu fits theta linearly.
- M on random-policy episodes (z = V's mu, teacher-forced): the error of its prediction of the
  next z (the mixture's mean) against that of repeating the current z, over the 8 dimensions of
  z that vary most and over all. An M worse than repetition gives a dream whose dynamics are
  worse than a frozen frame. (Where M's done head fires: `probe_done_head`.)
- C in the real environment (`--episodes`, the config's V, M and `controller.sample_z`): the
  return, how episodes end (by the pole angle or the cart position, whichever is nearer its
  threshold at the last step, or surviving `env.max_steps`), and the error of one linear
  read-out of (x, theta, x_dot, theta_dot) from C's input [z, h], by stretch of the episode:
  whether M's state loses track late in long episodes.
"""

import os

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from ml_collections import config_flags

from wm_jax.world_models import configs
from wm_jax.world_models.cmaes import rollout
from wm_jax.world_models.models.mdn_rnn import mdn_step
from wm_jax.world_models.stages.controller import load_world, restore_controller
from wm_jax.world_models.stages.encode import make_encoder
from wm_jax.world_models.stages.evaluate import random_policy

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(configs.__file__), 'default.py'),
    'The config the workdir was run with.')
_WORKDIR = flags.DEFINE_string('workdir', None, 'A trained pixel CartPole workdir.', required=True)
_EPISODES = flags.DEFINE_integer('episodes', 48, "C's real episodes.")
_RANDOM_EPISODES = flags.DEFINE_integer('random_episodes', 300, 'Random-policy episodes for V.')
STATE = ('x', 'theta', 'x_dot', 'theta_dot')
WINDOWS = ((0, 50), (50, 150), (150, 250), (250, 350), (350, 500))


def ridge_r2(inputs: np.ndarray, targets: np.ndarray, seed: int = 0) -> np.ndarray:
  """R^2 per target column of a ridge fit on a random 80% of the rows, scored on the rest."""
  order = np.random.default_rng(seed).permutation(len(inputs))
  train, test = order[:len(order) * 4 // 5], order[len(order) * 4 // 5:]
  x = np.c_[inputs, np.ones(len(inputs))]
  gram = x[train].T @ x[train] + 1e-3 * np.eye(x.shape[1])
  w = np.linalg.solve(gram, x[train].T @ targets[train])
  residual = ((x[test] @ w - targets[test]) ** 2).sum(0)
  return 1.0 - residual / ((targets[test] - targets[test].mean(0)) ** 2).sum(0)


def probe_v(config, world, key: jax.Array, episodes: int, steps: int = 20) -> None:
  env, params = world.real.env, world.real_params.env_params
  space = env.action_space(params)

  def pixel_episode(key):
    frames_and_states = lambda s, *_: (env.render(s, params), jnp.stack([s.x, s.theta]))
    return rollout(env, params, random_policy(space), None, key, steps, frames_and_states)

  _, (frames, states), alive = jax.jit(jax.vmap(pixel_episode))(jax.random.split(key, episodes))
  alive = np.asarray(alive).reshape(-1)
  frames = np.asarray(frames).reshape(-1, 64, 64, 3)[alive]
  states = np.asarray(states).reshape(-1, 2)[alive]
  mu, logvar = make_encoder(config, world.vae_params)(frames)
  z = mu + np.exp(0.5 * logvar) * np.random.default_rng(1).normal(size=mu.shape)
  r2_mu, r2_z = ridge_r2(mu, states), ridge_r2(z, states)
  theta_error = np.degrees(np.sqrt((1.0 - r2_z[1]) * states[:, 1].var()))
  print(f'V, {len(frames)} random-policy frames: R^2 of (x, theta) from mu '
        f'{r2_mu[0]:.4f}, {r2_mu[1]:.4f}; from sampled z {r2_z[0]:.4f}, {r2_z[1]:.4f} '
        f'(theta error {theta_error:.2f} deg)')


def probe_m(world, key: jax.Array, episodes: int, steps: int = 200) -> None:
  real, params = world.real, world.real_params
  env_params = params.replace(sample_z=False)

  def record(state, action, *_):
    _, mixture = mdn_step(real.mdn, params.mdn_params, state.mu, real.action_features(action),
                          state.first, (state.cell, state.hidden))
    weights = jax.nn.softmax(mixture.logits, axis=-1)
    return state.mu, (weights * mixture.means).sum(-1)

  policy = random_policy(real.action_space(params))
  run = jax.jit(jax.vmap(lambda k: rollout(real, env_params, policy, None, k, steps, record)))
  _, (mu, predicted), alive = jax.tree.map(
      np.asarray, run(jax.random.split(key, episodes)))
  alive = alive.astype(bool)
  has_next = alive[:, 1:]
  target = mu[:, 1:][has_next]
  ratio = (np.sqrt(((predicted[:, :-1][has_next] - target) ** 2).mean(0))
           / np.sqrt(((mu[:, :-1][has_next] - target) ** 2).mean(0)))
  top = np.argsort(-mu[alive].std(0))[:8]
  print(f'M, {alive.sum()} random-policy steps: error of its next-z prediction / error of '
        f'repeating z: {ratio[top].mean():.3f} (8 most varying dimensions), {ratio.mean():.3f} '
        f'(all)')


def probe_c(config, world, theta, key: jax.Array, episodes: int) -> None:
  max_steps = config.env.max_steps

  def record(state, *_):
    s = state.env_state
    return jnp.stack([s.x, s.theta, s.x_dot, s.theta_dot]), jnp.concatenate([state.z,
                                                                               state.hidden])
  run = jax.jit(jax.vmap(lambda k: rollout(world.real, world.real_params, world.policy, theta,
                                           k, max_steps, record)))
  returns, (states, inputs), alive = jax.tree.map(np.asarray, run(jax.random.split(key, episodes)))
  lengths = alive.sum(1)
  last = states[np.arange(episodes), np.maximum(lengths - 1, 0)]
  env_params = world.real_params.env_params
  ended = lengths < max_steps
  # The last recorded state is the one before the ending action: whichever of |theta| and |x|
  # is nearer its threshold ended the episode.
  by_angle = ended & (np.abs(last[:, 1]) / env_params.theta_threshold_radians >
                      np.abs(last[:, 0]) / env_params.x_threshold)
  print(f'C, {episodes} real episodes: return {returns.mean():.1f} +- {returns.std():.1f}; '
        f'ended by the pole angle {by_angle.sum()}, by the cart position '
        f'{(ended & ~by_angle).sum()}, survived {(~ended).sum()}')
  alive = alive.astype(bool)
  step = np.broadcast_to(np.arange(max_steps), alive.shape)[alive]
  states, inputs = states[alive], np.c_[inputs[alive], np.ones(alive.sum())]
  readout = np.linalg.lstsq(inputs, states, rcond=None)[0]
  print("  error of one linear read-out of the state from C's input [z, h], by steps:")
  for lo, hi in WINDOWS:
    window = (step >= lo) & (step < hi)
    if window.sum() < 50:
      continue
    rmse = np.sqrt(((inputs[window] @ readout - states[window]) ** 2).mean(0))
    spread = states[window].std(0)
    print(f'  steps {lo}-{hi} ({window.sum()} steps): ' + ', '.join(
        f'{n} {e:.3f} (std {s:.3f})' for n, e, s in zip(STATE, rmse, spread)))


def main(argv):
  del argv
  config, workdir = _CONFIG.value, _WORKDIR.value
  if config.env.name != 'CartPole-v1':
    raise app.UsageError(f'This probe reads CartPole states; the config has env.name='
                         f'{config.env.name!r}.')
  last_round = config.iterative.rounds - 1
  world = load_world(config, workdir, last_round)
  theta = restore_controller(config, workdir, world.template, last_round)
  key_v, key_c = jax.random.split(jax.random.key(0))
  key_m = jax.random.fold_in(jax.random.key(0), 2)
  probe_v(config, world, key_v, _RANDOM_EPISODES.value)
  probe_m(world, key_m, _RANDOM_EPISODES.value)
  probe_c(config, world, theta, key_c, _EPISODES.value)


if __name__ == '__main__':
  app.run(main)
