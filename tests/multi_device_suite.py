"""One training step of every trainer, and one CMA-ES generation, on 8 (forced host) devices
equals the same step on 1 device. Run by tests/multi_device_test.py in a pytest process of its
own, started with 8 host devices."""

import jax
import numpy as np
import pytest

from wm_jax.common import training
from wm_jax.world_models import configs as wm_configs
from wm_jax.world_models.stages import controller, mdn, vae
from wm_jax.world_models.world import build_world
from wm_jax.world_models.cmaes import strong_types
from wm_jax.videogpt import vqvae
from wm_jax.videogpt.latent_prior import FrozenVQVAE, Prior, clip_batches, first_batches
from wm_jax.videogpt import prior as prior_lib

from conftest import adam_first_moment, random_sequences, tiny_prior_config, tiny_vqvae_config

NUM_DEVICES = 8


def on_meshes(make_step, state, *batch):
  """(state, metrics) of `make_step(mesh)(state, *batch)` on a 1-device and an 8-device mesh;
  the 8-device step must split its work (its program exchanges data between the devices)."""
  state, results = jax.device_get(state), []  # On the host: the steps donate their input.
  for num_devices in (1, NUM_DEVICES):
    mesh = training.make_mesh(num_devices)
    step = make_step(mesh)
    placed = jax.device_put(state, training.replicated(mesh))
    if num_devices > 1:
      program = step.lower(placed, *batch).compile().as_text()
      assert any(op in program for op in ('all-reduce', 'all-gather', 'reduce-scatter'))
    results.append(jax.device_get(step(placed, *batch)))
  return results


def assert_same_gradient(one, eight):
  """Adam's first moment after one step is 0.1 x the gradient: equal to float tolerance. (The
  parameters are not compared: Adam's first step, lr x g / |g|, turns the rounding of a
  near-zero gradient summed over the devices in another order into a whole step either way.)"""
  mu_one, mu_eight = adam_first_moment(one.opt_state), adam_first_moment(eight.opt_state)
  scale = max(float(np.max(np.abs(x))) for x in jax.tree.leaves(mu_one))
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-6 * scale),
               mu_one, mu_eight)


def assert_same_metrics(one, eight, rtol=1e-5):
  for name in one:
    np.testing.assert_allclose(eight[name], one[name], rtol=rtol, err_msg=name)


def test_eight_devices():
  assert jax.device_count() == NUM_DEVICES, jax.devices()


def test_v_step():
  config = wm_configs.get('default:tiny')
  frames = np.random.default_rng(0).integers(0, 256, (16, 64, 64, 3), np.uint8)
  state = vae.create_train_state(config, jax.random.PRNGKey(0))
  (one, metrics_one), (eight, metrics_eight) = on_meshes(
      lambda mesh: vae.jit_train_step(config, mesh), state, frames)
  assert_same_metrics(metrics_one, metrics_eight)
  assert_same_gradient(one, eight)


def test_vqvae_step_with_codebook_and_batch_norm_statistics():
  """The codebook's first-batch init and EMA counts and sums, and BatchNorm's statistics, are
  over the whole batch of 8 clips, one per device. (The trainer around the step, `training.fit`
  with a sharded batch, is V's too: multi_host_test runs it end to end.)"""
  config = tiny_vqvae_config(None)
  config.data.batch_size = NUM_DEVICES
  videos = np.random.default_rng(0).integers(0, 256, (NUM_DEVICES, *vqvae.video_shape(config)),
                                              np.uint8)
  state = vqvae.create_train_state(config, jax.random.PRNGKey(0))
  (one, metrics_one), (eight, metrics_eight) = on_meshes(
      lambda mesh: vqvae.jit_train_step(config, mesh), state, videos)
  assert_same_metrics(metrics_one, metrics_eight, rtol=1e-4)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-4, atol=1e-5),
               (one.codebook, one.batch_stats), (eight.codebook, eight.batch_stats))
  assert_same_gradient(one, eight)


def test_prior_step(vqvae_workdir, clip_workdir):
  config = tiny_prior_config(vqvae_workdir, clip_workdir)
  frozen = FrozenVQVAE(vqvae_workdir)
  prior = Prior(config, frozen)
  batch = first_batches(clip_batches(config, frozen, 'train', NUM_DEVICES), 1)[0]
  state = prior_lib.create_train_state(config, prior, batch, jax.random.PRNGKey(0))
  (one, metrics_one), (eight, metrics_eight) = on_meshes(
      lambda mesh: prior_lib.jit_train_step(prior, mesh, NUM_DEVICES), state, frozen.variables,
      batch)
  assert_same_metrics(metrics_one, metrics_eight, rtol=1e-4)
  assert_same_gradient(one, eight)


def test_m_step():
  """One chunk of M's epoch (one Adam step), its 8 sequence streams one per device."""
  config = wm_configs.get('default:tiny')
  m = config.mdn
  m.num_streams = NUM_DEVICES
  data, lengths = random_sequences(config, NUM_DEVICES)
  index = mdn.epoch_index(lengths, m.num_streams, m.chunk_length, config.seed, epoch=0)
  assert index.shape == (NUM_DEVICES, 1, m.chunk_length)
  state = mdn.create_train_state(config, jax.random.PRNGKey(0))
  (one, metrics_one), (eight, metrics_eight) = on_meshes(
      lambda mesh: mdn.jit_train_epoch(config, mesh), state, data, index, jax.random.key(1))
  assert_same_metrics(metrics_one, metrics_eight, rtol=1e-4)
  assert_same_gradient(one, eight)


@pytest.mark.parametrize('train_in', ['dream', 'real'])
def test_cmaes_generation(train_in):
  """One generation of CMA-ES, its population of 8 split over the devices, in M's dream or in
  the real (pixel CartPole through V and M) environment: the same new search distribution."""
  config = wm_configs.get('default:tiny')
  c = config.controller
  c.update(train_in=train_in, population_size=NUM_DEVICES, eval_every=1)
  key_v, key_m, key_init, key_generations = jax.random.split(jax.random.key(0), 4)
  z = config.vae.model.z_size
  latents = {'mu': np.zeros((4, z), np.float32), 'logvar': np.full((4, z), -2.0, np.float32)}
  world = build_world(config, vae.create_train_state(config, key_v).params,
                      mdn.create_train_state(config, key_m).params, latents)
  es, es_params = controller.make_strategy(config, world.template)
  es_state = strong_types(es.init(key_init, world.template, es_params))
  (one, metrics_one), (eight, metrics_eight) = on_meshes(
      lambda mesh: controller.make_chunk(config, world, es, es_params, mesh), es_state,
      key_generations, 0)
  jax.tree.map(lambda a, b: np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6),
               (metrics_one, one), (metrics_eight, eight))
  assert np.all(np.asarray(metrics_one.mean_return) > 0)
