"""Shared fixtures: the persistent compilation cache and small real datasets, made with the tiny
configs (`default:tiny`)."""

import os
import shutil

import chex
import jax
import pytest

CACHE_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), '.cache',
                         'jax')
jax.config.update('jax_compilation_cache_dir', CACHE_DIR)
jax.config.update('jax_persistent_cache_min_compile_time_secs', 0)
jax.config.update('jax_persistent_cache_min_entry_size_bytes', 0)


@pytest.fixture(autouse=True)
def _fresh_trace_counters():
  chex.clear_trace_counter()


@pytest.fixture(scope='session')
def rollout_workdir(tmp_path_factory):
  """A workdir holding a small collected pixel-CartPole dataset (made once per session)."""
  from wm_jax.world_models import configs, run
  workdir = str(tmp_path_factory.mktemp('rollouts'))
  run(configs.get('default:tiny'), workdir, ['collect'])
  return workdir


@pytest.fixture(scope='session')
def clip_workdir(tmp_path_factory):
  """Pixel-CartPole rollouts for the video models: 120 episodes, so that the held-out 10%
  ('test', wm_jax/data/video.py) has a dozen clips."""
  from wm_jax.world_models import configs, run
  workdir = str(tmp_path_factory.mktemp('clips'))
  config = configs.get('default:tiny')
  config.collect.num_episodes = 120
  config.env.max_steps = 24
  config.collect.episodes_per_chunk = 40
  run(config, workdir, ['collect'])
  return workdir


def tiny_vqvae_config(workdir):
  """`vqvae_cartpole:tiny` on the rollouts in `workdir`: 8-frame 32x32 clips, 4x8x8 codes."""
  from wm_jax.videogpt import configs
  config = configs.get('vqvae_cartpole:tiny')
  config.data.data_dir = workdir
  return config


def equations(jaxpr, repeats: int = 1):
  """(equation, how often it runs) for every equation of `jaxpr` and of the jaxprs inside it
  (a scan body: its length times)."""
  for eqn in jaxpr.eqns:
    yield eqn, repeats
    inner = repeats * eqn.params.get('length', 1) if eqn.primitive.name == 'scan' else repeats
    for param in eqn.params.values():
      for sub in param if isinstance(param, (list, tuple)) else [param]:
        if isinstance(sub, (jax.extend.core.ClosedJaxpr, jax.extend.core.Jaxpr)):
          yield from equations(getattr(sub, 'jaxpr', sub), inner)


def adam_first_moment(opt_state):
  """The first moment of the Adam inside an optax state: 0.1 x the gradient after one step."""
  import optax
  is_adam = lambda node: isinstance(node, optax.ScaleByAdamState)
  return next(node for node in jax.tree.leaves(opt_state, is_leaf=is_adam) if is_adam(node)).mu


def random_sequences(config, num_chunks: int):
  """(M's dataset of `num_chunks` chunks of `mdn.chunk_length` random steps in two episodes,
  their lengths): mdn.Sequences on host."""
  import numpy as np
  from wm_jax.world_models.stages import mdn
  steps = num_chunks * config.mdn.chunk_length
  rng = np.random.default_rng(0)
  lengths = np.array([steps // 2, steps - steps // 2])
  position = np.arange(steps) % lengths[0]
  data = mdn.Sequences(
      mu=rng.normal(size=(steps, config.vae.model.z_size)).astype(np.float32),
      logvar=rng.normal(-2.0, 0.5, (steps, config.vae.model.z_size)).astype(np.float32),
      actions=np.eye(2, dtype=np.float32)[rng.integers(0, 2, steps)],
      restarts=(position == 0).astype(np.float32),
      has_next=(position != lengths[0] - 1).astype(np.float32),
      terminals=(np.arange(steps) == steps - 1).astype(np.float32),
      rewards=np.ones(steps, np.float32))
  return data, lengths


def tiny_prior_config(vqvae_workdir, clip_workdir):
  """`videogpt_cartpole:tiny` over the VQ-VAE run in `vqvae_workdir`."""
  from wm_jax.videogpt import configs
  config = configs.get('videogpt_cartpole:tiny')
  config.vqvae.workdir = vqvae_workdir
  config.data.data_dir = clip_workdir
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
  from wm_jax.world_models import Workdir, configs, run
  workdir = str(tmp_path_factory.mktemp('latents'))
  shutil.copytree(Workdir(rollout_workdir).rollouts, Workdir(workdir).rollouts)
  run(configs.get('default:tiny'), workdir, ['vae', 'encode'])
  return workdir
