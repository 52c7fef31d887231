"""The video VQ-VAE's training throughput: clips/s, achieved FLOP/s and the fraction of the
device's measured matmul rate.

  python -m experiments.benchmarks.vqvae_throughput [--config=wm_jax/videogpt/configs/vqvae_moving_digits.py]
      [--config.model.hidden=240 --config.model.residual_units=128] [--steps=10] [--out=f.json]

Times the jitted train step (forward, backward, Adam, BatchNorm and EMA-codebook updates) on a
fixed random batch placed as the trainer places it. Model FLOPs per step come from XLA's cost
analysis of the step compiled with conv_impl='xla' (strided and transposed convolutions as
such, no multiplications by inserted zeros); the executed FLOPs of the configured impl are
reported beside them. Compilation and a warm-up step are excluded; the median step counts.
"""

import functools
import os

import jax
import jax.numpy as jnp
from absl import app, flags
from ml_collections import config_flags

from experiments.benchmarks.common import measured_matmul_flops, median_step_seconds, report
from wm_jax.common import training
from wm_jax.videogpt import configs, vqvae

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(configs.__file__), 'vqvae_moving_digits.py'),
    'A VQ-VAE config file.', lock_config=True)
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps.')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON here too.')


def _step_flops(config, mesh, videos) -> float:
  abstract_state = jax.eval_shape(functools.partial(vqvae.create_train_state, config),
                                  jax.random.PRNGKey(0))
  compiled = vqvae.jit_train_step(config, mesh).lower(abstract_state, videos).compile()
  return float(compiled.cost_analysis()['flops'])


def main(argv):
  del argv
  config = _CONFIG.value
  batch = config.data.batch_size
  mesh = training.make_mesh(config.mesh.data)
  videos = jax.device_put(
      jax.random.randint(jax.random.key(1), (batch, *vqvae.video_shape(config)), 0, 256,
                         jnp.int32).astype(jnp.uint8), training.data_sharding(mesh, batch))
  executed_flops = _step_flops(config, mesh, videos)
  reference = config.copy_and_resolve_references()
  with reference.unlocked():
    reference.model.conv_impl = 'xla'
  flops_per_step = _step_flops(reference, mesh, videos)

  state = jax.device_put(vqvae.create_train_state(config, jax.random.PRNGKey(0)),
                         training.replicated(mesh))
  step = vqvae.jit_train_step(config, mesh)
  seconds = median_step_seconds(step, state, videos, _STEPS.value)
  peak = measured_matmul_flops()
  m = config.model
  report({
      'clip_shape': list(vqvae.video_shape(config)), 'batch_size': batch,
      'model': {'hidden': m.hidden, 'residual_units': m.residual_units,
                'num_res_layers': m.num_res_layers, 'codes': [m.num_codes, m.code_dim],
                'downsample': list(m.downsample), 'attention': m.attention,
                'conv_impl': m.conv_impl},
      'seconds_per_step': seconds, 'clips_per_s': batch / seconds,
      'model_gflop_per_step': flops_per_step / 1e9,
      'executed_gflop_per_step': executed_flops / 1e9,
      'achieved_gflop_per_s': flops_per_step / seconds / 1e9,
      'matmul_peak_gflop_per_s': peak / 1e9, 'fraction_of_peak': flops_per_step / seconds / peak,
  }, _OUT.value)


if __name__ == '__main__':
  app.run(main)
