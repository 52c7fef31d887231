import jax
import jax.numpy as jnp
import numpy as np

from wm_jax.world_models.latent_env import LatentEnv, LatentParams
from wm_jax.envs.pixels import make_pixel_env
from wm_jax.world_models.models.controller import LinearController, make_policy
from wm_jax.world_models.models.conv_vae import ConvVAE
from wm_jax.world_models.models.mdn_rnn import MDNRNN
from wm_jax.world_models.cmaes import episode_return

Z, H, MAX_STEPS = 8, 16, 60


def make_latent_cartpole():
  env, env_params = make_pixel_env('CartPole-v1')
  vae = ConvVAE(Z)
  mdn = MDNRNN(z_size=Z, action_size=2, hidden_size=H, use_restart=True, predict_done=True)
  vae_params = vae.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3), jnp.uint8),
                        jax.random.key(0))['params']
  mdn_params = mdn.init(jax.random.key(1), jnp.zeros((1, 1, Z)), jnp.zeros((1, 1, 2)))['params']
  latent = LatentEnv(env, vae, mdn, lambda a: jax.nn.one_hot(a, 2))
  params = LatentParams(env_params=env_params, vae_params=vae_params, mdn_params=mdn_params,
                        max_steps_in_episode=MAX_STEPS)
  controller = LinearController(2)
  theta = jax.tree.map(lambda x: jax.random.normal(jax.random.key(2), x.shape),
                       controller.init(jax.random.key(3), jnp.zeros(Z + H)))
  return latent, params, make_policy(controller, env.action_space(env_params)), theta


def test_jitted_vmapped_evaluation_equals_a_plain_loop():
  env, params, policy, theta = make_latent_cartpole()
  keys = jax.random.split(jax.random.key(7), 4)
  returns = jax.jit(jax.vmap(lambda k: episode_return(env, params, policy, theta, k, MAX_STEPS)))(keys)

  for key, expected in zip(keys, np.asarray(returns)):
    key_reset, key_steps = jax.random.split(key)
    obs, state = env.reset(key_reset, params)
    total, length = 0.0, 0
    for step_key in jax.random.split(key_steps, MAX_STEPS):
      obs, state, reward, terminated, truncated, _ = env.step(step_key, state,
                                                              policy(theta, obs, None), params)
      total += float(reward)
      length += 1
      if terminated or truncated:
        break
    assert total == expected and 1 < length <= MAX_STEPS


def test_observation_is_v_then_m_memory():
  env, params, policy, theta = make_latent_cartpole()
  sampled, _ = env.reset(jax.random.key(0), params)
  params = params.replace(sample_z=False)
  obs, state = env.reset(jax.random.key(0), params)
  assert obs.shape == env.observation_space(params).shape == (Z + H,)
  frame, _ = env.env.reset_env(jax.random.key(0), params.env_params)
  mu, _ = env.vae.apply({'params': params.vae_params}, frame[None], method=ConvVAE.encode)
  np.testing.assert_allclose(obs[:Z], mu[0], atol=1e-5)
  np.testing.assert_allclose(state.mu, mu[0], atol=1e-5)
  # Sampled: z = mu + sigma * noise, with V's sigma (near 1 for this untrained V).
  noise = (sampled[:Z] - mu[0]) / np.exp(0.5 * np.asarray(state.logvar))
  assert 0.3 < np.std(noise) < 3.0 and np.abs(sampled[:Z] - mu[0]).max() > 1e-3
  np.testing.assert_array_equal(obs[Z:], 0.0)
  obs, state, *_ = env.step(jax.random.key(1), state, policy(theta, obs, None), params)
  assert np.abs(obs[Z:]).sum() > 0 and int(state.time) == 1
