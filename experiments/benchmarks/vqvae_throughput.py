"""The video VQ-VAE's train step: clips/s and FLOPs (run by `python -m experiments.benchmarks`).

Times the jitted train step (forward, backward, Adam, BatchNorm and EMA-codebook updates) on a
fixed random batch placed as the trainer places it. Model FLOPs per step come from XLA's cost
analysis of the step compiled with conv_impl='xla' (strided and transposed convolutions as
such, no multiplications by inserted zeros); the executed FLOPs of the configured impl are in
the row's notes.
"""

import functools

import jax
import jax.numpy as jnp
import ml_collections

from experiments.benchmarks.common import Row, compiled_flops, median_step_seconds
from wm_jax.common import training
from wm_jax.videogpt import vqvae


def _step_flops(config, mesh, videos) -> float:
  abstract_state = jax.eval_shape(functools.partial(vqvae.create_train_state, config),
                                  jax.random.PRNGKey(0))
  return compiled_flops(vqvae.jit_train_step(config, mesh), abstract_state, videos)


def vqvae_train_step(config: ml_collections.ConfigDict, steps: int = 5) -> Row:
  """One step of the VQ-VAE of `config` (a VQ-VAE config) on `data.batch_size` random clips."""
  batch = config.data.batch_size
  mesh = training.make_mesh(config.mesh.data)
  videos = jax.device_put(
      jax.random.randint(jax.random.key(1), (batch, *vqvae.video_shape(config)), 0, 256,
                         jnp.int32).astype(jnp.uint8), training.data_sharding(mesh, batch))
  executed = _step_flops(config, mesh, videos)
  reference = config.copy_and_resolve_references()
  with reference.unlocked():
    reference.model.conv_impl = 'xla'
  flop = _step_flops(reference, mesh, videos)
  state = jax.device_put(vqvae.create_train_state(config, jax.random.PRNGKey(0)),
                         training.replicated(mesh))
  seconds = median_step_seconds(vqvae.jit_train_step(config, mesh), state, videos, steps)
  m = config.model
  shape = 'x'.join(map(str, vqvae.video_shape(config)))
  return Row(f'VQ-VAE train step ({m.dtype})', f'batch {batch} of {shape}, hidden {m.hidden}, '
             f'{m.num_res_layers} residual layers', 'clips/s', batch, seconds, flop,
             f'executes {executed / 1e9:.3g} GFLOP (conv_impl={m.conv_impl})')
