"""V's training throughput: images/s, achieved FLOP/s and the fraction of measured matmul peak.

  python -m experiments.benchmarks.vae_throughput [--batch_size=100] [--z_size=32] [--steps=20]
      [--transposed_conv=matmul] [--out=vae_throughput.json]

The model's FLOPs per step come from XLA's cost analysis of the compiled train step in the
`nn.ConvTranspose` form (it counts no multiplications by inserted zeros); the 'matmul' form
executes slightly more (zero taps that pad k=5 kernels to 6), also reported. The peak is the best
of several large matmuls on the same device. Compilation and a warm-up step are excluded.
"""

import functools

import jax
import jax.numpy as jnp
from absl import app, flags

from experiments.benchmarks.common import measured_matmul_flops, median_step_seconds, report
from wm_jax.world_models.configs import default
from wm_jax.common import training
from wm_jax.world_models.stages import vae

_BATCH = flags.DEFINE_integer('batch_size', 100, 'Images per step (paper: 100).')
_Z = flags.DEFINE_integer('z_size', 32, 'Latent size (paper: 32 CarRacing, 64 Doom).')
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps.')
_DECONV = flags.DEFINE_enum('transposed_conv', 'matmul', ['matmul', 'xla'], 'Decoder deconv form.')
_DTYPE = flags.DEFINE_enum('dtype', 'float32', ['float32', 'bfloat16'], 'Compute dtype.')
_OUT = flags.DEFINE_string('out', None, 'Write the results as JSON here too.')


def main(argv):
  del argv
  config = default.get_config()
  config.vae.batch_size = _BATCH.value
  config.vae.model.update(z_size=_Z.value, transposed_conv=_DECONV.value, dtype=_DTYPE.value)
  mesh = training.make_mesh(config.mesh.data)
  state = jax.device_put(vae.create_train_state(config, jax.random.PRNGKey(0)),
                         training.replicated(mesh))
  frames = jax.device_put(
      jax.random.randint(jax.random.key(1), (_BATCH.value, 64, 64, 3), 0, 256, jnp.int32
                         ).astype(jnp.uint8), training.data_sharding(mesh, _BATCH.value))
  step = vae.jit_train_step(config, mesh)
  executed_flops = float(step.lower(state, frames).compile().cost_analysis()['flops'])
  reference = config.copy_and_resolve_references()
  reference.vae.model.transposed_conv = 'xla'
  reference_state = jax.eval_shape(functools.partial(vae.create_train_state, reference),
                                   jax.random.PRNGKey(0))
  flops_per_step = float(vae.jit_train_step(reference, mesh).lower(reference_state, frames)
                         .compile().cost_analysis()['flops'])
  seconds = median_step_seconds(step, state, frames, _STEPS.value)
  peak = measured_matmul_flops(jnp.dtype(_DTYPE.value))
  result = {
      'batch_size': _BATCH.value, 'z_size': _Z.value,
      'transposed_conv': _DECONV.value, 'dtype': _DTYPE.value,
      'seconds_per_step': seconds, 'images_per_s': _BATCH.value / seconds,
      'model_gflop_per_step': flops_per_step / 1e9,
      'executed_gflop_per_step': executed_flops / 1e9,
      'achieved_gflop_per_s': flops_per_step / seconds / 1e9,
      'matmul_peak_gflop_per_s': peak / 1e9, 'fraction_of_peak': flops_per_step / seconds / peak,
  }
  report(result, _OUT.value)


if __name__ == '__main__':
  app.run(main)
