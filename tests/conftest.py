"""Shared fixtures: the persistent compilation cache, small real datasets, a tiny config."""

import os
import shutil

import chex
import jax
import pytest

_CACHE = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache', 'jax')
jax.config.update('jax_compilation_cache_dir', _CACHE)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


@pytest.fixture(autouse=True)
def _fresh_trace_counters():
  chex.clear_trace_counter()


def small_config():
  """The default config, shrunk so that a stage runs in seconds on a CPU."""
  from wm_jax.world_models.configs import default
  config = default.get_config()
  config.collect.num_episodes = 24
  config.collect.max_steps = 60
  config.collect.episodes_per_chunk = 8
  config.vae.batch_size = 16
  config.vae.num_steps = 6
  config.vae.shuffle_window = 64
  config.vae.learning_rate = 1e-3
  config.vae.log_every = 2
  config.vae.eval_every = 3
  config.vae.checkpoint_every = 2
  config.encode.batch_size = 32
  config.mdn.hidden_size = 16
  config.mdn.num_streams = 4
  config.mdn.chunk_length = 8
  config.mdn.num_epochs = 4
  config.controller.population_size = 8
  config.controller.num_rollouts = 2
  config.controller.max_steps = 20
  config.controller.num_generations = 4
  config.controller.eval_every = 2
  config.controller.eval_episodes = 4
  config.evaluate.num_episodes = 4
  config.evaluate.max_steps = 30
  config.evaluate.gif_steps = 10
  return config


@pytest.fixture(scope='session')
def rollout_workdir(tmp_path_factory):
  """A workdir holding a small collected pixel-CartPole dataset (made once per session)."""
  from wm_jax.data.collect import collect_dataset
  workdir = str(tmp_path_factory.mktemp('rollouts'))
  collect_dataset(small_config(), workdir)
  return workdir


@pytest.fixture(scope='session')
def clip_workdir(tmp_path_factory):
  """Pixel-CartPole rollouts for the video models: 120 episodes, so that the held-out 10%
  ('test', wm_jax/data/video.py) has a dozen clips."""
  from wm_jax.data.collect import collect_dataset
  workdir = str(tmp_path_factory.mktemp('clips'))
  config = small_config()
  config.collect.num_episodes = 120
  config.collect.max_steps = 24
  config.collect.episodes_per_chunk = 40
  collect_dataset(config, workdir)
  return workdir


def tiny_vqvae_config(workdir):
  """A VQ-VAE on 8-frame 32x32 clips of the rollouts in `workdir`: 4x8x8 codes of 32."""
  from wm_jax.videogpt.configs import vqvae_moving_digits
  config = vqvae_moving_digits.get_config()
  config.data.name = 'world_models'
  config.data.data_dir = workdir
  config.data.num_frames = 8
  config.data.resolution = 32
  config.data.channels = 3
  config.data.batch_size = 4
  config.model.hidden = 16
  config.model.residual_units = 8
  config.model.num_res_layers = 1
  config.model.num_codes = 32
  config.model.code_dim = 8
  config.model.downsample = (2, 4, 4)
  config.model.attention = True
  config.train.num_steps = 4
  config.train.log_every = 2
  config.train.eval_every = 2
  config.train.checkpoint_every = 2
  config.eval.num_clips = 8
  config.eval.batch_size = 4
  return config


@pytest.fixture(scope='session')
def vqvae_workdir(clip_workdir, tmp_path_factory):
  """A VQ-VAE run of `tiny_vqvae_config` (4 steps)."""
  from wm_jax.videogpt import vqvae
  workdir = str(tmp_path_factory.mktemp('vqvae'))
  vqvae.train_and_evaluate(tiny_vqvae_config(clip_workdir), workdir)
  return workdir


@pytest.fixture(scope='session')
def reference_vqvae_workdir(clip_workdir, tmp_path_factory):
  """`vqvae_workdir` with codes relative to frame 3 (model.reference_frame)."""
  from wm_jax.videogpt import vqvae
  workdir = str(tmp_path_factory.mktemp('reference_vqvae'))
  config = tiny_vqvae_config(clip_workdir)
  config.model.reference_frame = 3
  vqvae.train_and_evaluate(config, workdir)
  return workdir


@pytest.fixture(scope='session')
def latent_workdir(rollout_workdir, tmp_path_factory):
  """A workdir with the small rollouts, a (briefly) trained V and the encoded latents."""
  from wm_jax.data.collect import rollouts_path
  from wm_jax.world_models.stages import vae
  workdir = str(tmp_path_factory.mktemp('latents'))
  shutil.copytree(rollouts_path(rollout_workdir), rollouts_path(workdir))
  vae.train_and_evaluate(small_config(), workdir)
  vae.encode_dataset(small_config(), workdir)
  return workdir
