"""Host games as gymnax environments: parallel evaluation equals a plain loop, no auto-reset."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.algorithms import CMA_ES
from gymnax.environments import spaces

from wm_jax.envs import games
from wm_jax.envs.host import HostEnv, reset_seed
from wm_jax.world_models.latent_env import LatentEnv, LatentParams
from wm_jax.world_models.models.controller import doom_action, make_controller
from wm_jax.world_models.models.conv_vae import ConvVAE
from wm_jax.world_models.models.mdn_rnn import (MDNRNN, action_features, controller_observation,
                                                mdn_step)
from wm_jax.world_models.cmaes import make_generation, rollout, strong_types
from wm_jax.world_models.stages.controller import make_scorer

Z, H, MAX_STEPS = 8, 16, 150


@pytest.fixture(scope='module')
def doom():
  env = HostEnv('DoomTakeCover', num_workers=2)
  yield env
  env.close()


def features(action):
  return action_features(action, 3, 'centered')


def test_parallel_evaluation_of_a_fixed_controller_equals_a_plain_loop(doom):
  """C through V and M in the real game, jitted and vmapped over 4 episodes in 2 worker
  processes, against one game stepped in a Python loop with the same seeds."""
  vae = ConvVAE(Z)
  mdn = MDNRNN(z_size=Z, action_size=1, hidden_size=H, use_restart=True, predict_done=True)
  vae_params = vae.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.uint8),
                        jax.random.key(0))['params']
  mdn_params = mdn.init(jax.random.key(1), jnp.zeros((1, 1, Z)), jnp.zeros((1, 1, 1)))['params']
  env = LatentEnv(doom, vae, mdn, features, include_cell=True)
  params = LatentParams(env_params=doom.default_params, vae_params=vae_params,
                        mdn_params=mdn_params, sample_z=False, max_steps_in_episode=MAX_STEPS)
  controller, policy = make_controller(doom.action_space(), 'doom')
  theta = controller.init(jax.random.key(3), jnp.zeros(Z + 2 * H))
  theta = jax.tree.map(lambda x: 0.3 * jax.random.normal(jax.random.key(2), x.shape), theta)
  keys = jax.random.split(jax.random.key(7), 4)
  returns = np.asarray(make_scorer(env, params, policy, MAX_STEPS)(theta, keys))

  encode = jax.jit(lambda frame: vae.apply({'params': vae_params}, frame[None],
                                           method=ConvVAE.encode)[0][0])
  step_m = jax.jit(lambda z, a, first, carry: mdn_step(mdn, mdn_params, z, features(a), first,
                                                       carry)[0])
  game = games.make_game('DoomTakeCover')
  actions_taken = set()
  try:
    for key, expected in zip(keys, returns):
      key_reset, _ = jax.random.split(key)
      frame = game.reset(int(reset_seed(key_reset)))
      carry, first, total = (jnp.zeros(H), jnp.zeros(H)), True, 0.0
      for _ in range(MAX_STEPS):
        z = encode(jnp.asarray(frame))
        raw = controller.apply(theta, controller_observation(z, *carry, True))
        action = int(doom_action(raw))
        actions_taken.add(action)
        carry = step_m(z, action, first, carry)
        frame, reward, terminated = game.step(action)
        total, first = total + reward, False
        if terminated:
          break
      assert total == expected
  finally:
    game.close()
  assert len(actions_taken) > 1  # C's decisions depend on what it sees.
  assert 1 <= returns.min() < MAX_STEPS  # At least one episode ends by dying (116 frames).
  assert returns.max() == MAX_STEPS


def test_a_finished_episode_stays_finished(doom):
  """No auto-reset: after the first done, steps pay 0 and stay done on the last frame."""
  params = doom.default_params

  def record(state, action, reward, terminated, truncated):
    return reward, terminated, state.frame

  # Standing still in take_cover: the fireballs end the episode within 600 frames.
  _, (rewards, terminated, frames), alive = jax.jit(lambda key: rollout(
      doom, params, lambda *_: jnp.int32(1), None, key, 600, record))(jax.random.key(0))
  end = int(np.argmax(np.asarray(terminated)))
  assert terminated[end] and 100 < end < 599
  np.testing.assert_array_equal(rewards[:end + 1], 1.0)
  np.testing.assert_array_equal(rewards[end + 1:], 0.0)
  assert np.asarray(terminated[end:]).all() and int(alive.sum()) == end + 1
  np.testing.assert_array_equal(frames[end + 1:], np.broadcast_to(frames[end + 1],
                                                                   frames[end + 1:].shape))


def test_a_replaced_batch_cannot_be_stepped(doom):
  params = doom.default_params
  _, old = doom.reset(jax.random.key(0), params)
  doom.reset(jax.random.key(1), params)
  with pytest.raises(Exception, match='a later reset replaced'):
    jax.block_until_ready(doom.step(jax.random.key(2), old, 1, params))


def test_games_in_this_process_match_games_in_workers(doom):
  local = HostEnv('DoomTakeCover', num_workers=0)
  params = doom.default_params
  try:
    for env in (doom, local):
      frame, state = env.reset(jax.random.key(5), params)
      for action in (0, 0, 2):
        frame, state, *_ = env.step(jax.random.key(6), state, action, params)
      if env is doom:
        expected = np.asarray(frame)
    np.testing.assert_array_equal(frame, expected)
  finally:
    local.close()


def test_spaces_and_errors():
  doom, carracing = HostEnv('DoomTakeCover', 0), HostEnv('CarRacing-v3', 0)
  assert isinstance(doom.action_space(), spaces.Discrete) and doom.num_actions == 3
  box = carracing.action_space()
  assert carracing.num_actions == 3
  np.testing.assert_array_equal(box.low, [-1, 0, 0])
  np.testing.assert_array_equal(box.high, [1, 1, 1])
  with pytest.raises(ValueError, match="No host environment 'Pong'"):
    HostEnv('Pong')


def test_every_cmaes_candidate_plays_its_own_game():
  """Candidates share their episodes' seeds (common random numbers), not their games: each of
  population x rollouts episodes is a game of its own. (With the keys shared unbatched, the
  reset was traced once for the whole population and one game was stepped by every candidate.)"""
  env = HostEnv('CarRacing-v3', num_workers=0)
  params = env.default_params.replace(max_steps_in_episode=2)
  space = env.action_space(params)
  template = {'action': jnp.zeros(3)}
  policy = lambda theta, obs, key: jnp.clip(theta['action'], space.low, space.high)
  es = CMA_ES(population_size=4, solution=template)
  es_state = strong_types(es.init(jax.random.key(0), template, es.default_params))
  generation = make_generation(env, params, policy, es, es.default_params, num_rollouts=2,
                               max_steps=2, weight_decay=0.0)
  try:
    jax.block_until_ready(jax.jit(generation)(es_state, jax.random.key(1)))
    assert sorted(env.pool._local) == list(range(4 * 2))
    with pytest.raises(RuntimeError, match='episodes of one step share a game'):
      env.pool.step(np.array([0, 0]), np.array([env.pool.batch] * 2), np.zeros((2, 3)))
  finally:
    env.close()
