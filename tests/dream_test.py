import os
import re
import shutil

import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from evosax.problems import MLP, GymnaxProblem
from gymnax.environments import spaces

from wm_jax import world_models
from wm_jax.world_models import DREAM_ENV_ID, Workdir, configs
from wm_jax.world_models.dream import DreamEnv, DreamParams
from wm_jax.world_models.models.mdn_rnn import MDNRNN, mdn_step

Z, H = 4, 8


def make_dream(done_bias=-10.0, predict_reward=False, temperature=1.0, include_cell=False):
  mdn = MDNRNN(z_size=Z, action_size=2, hidden_size=H, use_restart=True, predict_done=True,
               predict_reward=predict_reward)
  params = mdn.init(jax.random.key(0), jnp.zeros((1, 1, Z)), jnp.zeros((1, 1, 2)))['params']
  done_index = 3 * 5 * Z
  params['rnn']['head']['bias'] = params['rnn']['head']['bias'].at[done_index].set(done_bias)
  env = DreamEnv(mdn, spaces.Discrete(2), lambda a: jax.nn.one_hot(a, 2), include_cell)
  initial = jax.random.normal(jax.random.key(1), (7, Z))
  env_params = DreamParams(mdn_params=params, initial_mu=initial,
                           initial_logvar=jnp.full((7, Z), -20.0), temperature=temperature,
                           max_steps_in_episode=50)
  return env, env_params, initial


def test_gymnax_api_jit_and_vmap():
  env, params, initial = make_dream()
  keys = jax.random.split(jax.random.key(2), 5)
  obs, state = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))(keys, params)
  assert obs.shape == (5, Z + H) == (5, *env.observation_space(params).shape)
  # The first observation is a stored first-frame latent (sigma ~ 0 here) and a zero LSTM state.
  assert all(np.min(np.abs(initial - o[:Z]).sum(-1)) < 1e-3 for o in np.asarray(obs))
  np.testing.assert_array_equal(obs[:, Z:], 0.0)
  step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
  obs, state, reward, terminated, truncated, info = step(keys, state, jnp.array([0, 1, 0, 1, 0]),
                                                          params)
  assert obs.shape == (5, Z + H) and reward.shape == terminated.shape == truncated.shape == (5,)
  np.testing.assert_array_equal(reward, 1.0)  # Survival reward: M has no reward head.
  assert not terminated.any() and (state.time == 1).all() and not state.first.any()
  assert np.abs(obs[:, Z:]).sum() > 0  # h has read z_0 and a_0.
  assert 'final_observation' in info
  assert env.action_space(params).n == 2


def test_done_logit_ends_and_auto_resets():
  env, params, _ = make_dream(done_bias=10.0)
  obs, state = env.reset(jax.random.key(0), params)
  obs, state, reward, terminated, truncated, info = env.step(jax.random.key(1), state, 1, params)
  assert bool(terminated) and not bool(truncated)
  assert int(state.time) == 0 and bool(state.first)  # Auto-reset to a fresh episode.
  np.testing.assert_array_equal(obs[Z:], 0.0)


def test_time_limit_truncates():
  env, params, _ = make_dream()
  params = params.replace(max_steps_in_episode=3)
  _, state = env.reset(jax.random.key(0), params)
  truncations = []
  for t in range(3):
    _, state, _, terminated, truncated, _ = env.step(jax.random.key(t), state, 0, params)
    truncations.append(bool(truncated))
  assert truncations == [False, False, True]


def test_zero_temperature_is_deterministic_and_reward_head_pays():
  env, params, _ = make_dream(temperature=0.0, predict_reward=True)
  _, state = env.reset(jax.random.key(0), params)
  a = env.step(jax.random.key(1), state, 1, params)
  b = env.step(jax.random.key(2), state, 1, params)
  np.testing.assert_allclose(a[0], b[0])
  assert float(a[2]) != 1.0  # The reward head's prediction, not the survival reward.


def test_cell_in_observation():
  env, params, _ = make_dream(include_cell=True)
  obs, _ = env.reset(jax.random.key(0), params)
  assert obs.shape == (Z + 2 * H,) == env.observation_space(params).shape


def test_episodes_start_from_sampled_z_or_from_mu():
  env, params, initial = make_dream()
  params = params.replace(initial_logvar=jnp.zeros_like(initial))  # sigma = 1
  reset = jax.jit(jax.vmap(env.reset, in_axes=(0, None)))
  keys = jax.random.split(jax.random.key(3), 64)
  z_mean = np.asarray(reset(keys, params.replace(sample_z=False))[1].z)
  z_sampled = np.asarray(reset(keys, params)[1].z)
  # z = mu: every start is one of the stored first-frame means; sampled: none is.
  distance = lambda z: np.abs(z[:, None] - np.asarray(initial)[None]).max(-1).min(-1)
  assert distance(z_mean).max() < 1e-6
  assert distance(z_sampled).min() > 0.05


def test_sampled_done_ends_with_the_done_probability():
  env, params, _ = make_dream(done_bias=-1.0)
  _, state = env.reset(jax.random.key(0), params)
  _, mixture = mdn_step(env.mdn, params.mdn_params, state.z, jax.nn.one_hot(0, 2), state.first,
                        (state.cell, state.hidden))
  assert -3.0 < float(mixture.done_logits) < 0.0
  step = jax.jit(jax.vmap(env.step, in_axes=(0, None, None, None)))
  keys = jax.random.split(jax.random.key(1), 4000)
  assert not step(keys, state, 0, params)[3].any()  # The paper's threshold: logit < 0, no done.
  sampled = np.asarray(step(keys, state, 0, params.replace(sample_done=True))[3])
  np.testing.assert_allclose(sampled.mean(), jax.nn.sigmoid(mixture.done_logits), atol=0.03)


def test_a_dream_without_m_and_its_initial_latents_says_what_it_needs():
  env, params, _ = make_dream()
  with pytest.raises(ValueError, match=r'The dream needs DreamParams holding M .*load_world'):
    env.reset(jax.random.key(0))  # gymnax's default params: no M, no initial latents.
  with pytest.raises(ValueError, match=re.escape(f'gymnax.make({DREAM_ENV_ID!r}, workdir=')):
    env.reset(jax.random.key(0))
  _, state = env.reset(jax.random.key(0), params)
  with pytest.raises(ValueError, match='initial_mu'):
    env.step(jax.random.key(1), state, 0, params.replace(mdn_params=None))


@pytest.fixture(scope='module')
def trained_workdir(latent_workdir, tmp_path_factory):
  """`latent_workdir` (V and the encoded latents) with a trained M (`default:tiny`)."""
  workdir = str(tmp_path_factory.mktemp('trained_dream'))
  for part in ('data', 'vae'):
    shutil.copytree(os.path.join(latent_workdir, part), os.path.join(workdir, part))
  world_models.run(configs.get('default:tiny'), workdir, ['mdn'])
  return workdir


def test_gymnax_make_builds_the_dream_of_a_trained_workdir(trained_workdir):
  env, params = gymnax.make(DREAM_ENV_ID, workdir=trained_workdir, config='default:tiny')
  config = configs.get('default:tiny')
  assert isinstance(env, DreamEnv) and params is env.default_params
  with np.load(Workdir(trained_workdir).initial_latents) as initial:
    np.testing.assert_array_equal(params.initial_mu, initial['mu'])
  assert params.mdn_params is not None and params.temperature == config.dream.temperature
  assert params.max_steps_in_episode == config.env.max_steps
  obs, state = env.reset(jax.random.key(0))  # The trained default params: no params passed.
  assert obs.shape == env.observation_space(params).shape
  obs, _, reward, *_ = env.step(jax.random.key(1), state, 1)
  assert np.isfinite(obs).all() and float(reward) == 1.0  # CartPole's M: no reward head.


def test_evosax_gymnax_problem_scores_a_population_in_the_dream(trained_workdir):
  env_kwargs = {'workdir': trained_workdir, 'config': 'default:tiny'}
  problem = GymnaxProblem(DREAM_ENV_ID, policy=MLP(layer_sizes=(8, 2)), episode_length=20,
                          env_kwargs=env_kwargs)
  key_sample, key_init, key_eval = jax.random.split(jax.random.key(0), 3)
  population = jax.vmap(problem.sample)(jax.random.split(key_sample, 4))
  fitness, _, _ = problem.eval(key_eval, population, problem.init(key_init))
  assert fitness.shape == (4,)
  assert ((1.0 <= fitness) & (fitness <= 20.0)).all()  # +1 per step alive, at most 20 steps.


@pytest.mark.parametrize('sample_z', [False, True])
def test_the_config_sets_where_dream_episodes_start(sample_z):
  config = configs.get('default:tiny')
  config.mdn.sample_z = config.controller.sample_z = sample_z
  zeros = np.zeros((3, config.vae.model.z_size), np.float32)
  world = world_models.world.build_world(config, None, None, {'mu': zeros, 'logvar': zeros})
  assert world.dream_params.sample_z is sample_z and world.real_params.sample_z is sample_z
