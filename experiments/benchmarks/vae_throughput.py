"""V's train step: images/s and FLOPs (run by `python -m experiments.benchmarks`).

The model's FLOPs per step come from XLA's cost analysis of the compiled train step in the
`nn.Conv` / `nn.ConvTranspose` form (it counts no multiplications by inserted zeros); the
'matmul' forms that run execute slightly more (zero taps that pad k=5 kernels to 6), named in
the row's notes.
"""

import functools

import jax
import jax.numpy as jnp

from experiments.benchmarks.common import Row, compiled_flops, median_step_seconds
from wm_jax.common import training
from wm_jax.world_models.configs import default
from wm_jax.world_models.stages import vae


def v_train_step(batch_size: int = 100, z_size: int = 32, dtype: str = 'float32',
                 convs: str = 'matmul', steps: int = 10) -> Row:
  """One Adam step of V on `batch_size` random 64x64 frames (paper: 100; z 32 CarRacing, 64
  Doom), state replicated and batch sharded as the trainer places them (1 device); `convs` sets
  vae.model.strided_conv and transposed_conv."""
  config = default.get_config()
  config.vae.batch_size = batch_size
  config.vae.model.update(z_size=z_size, dtype=dtype, strided_conv=convs, transposed_conv=convs)
  mesh = training.make_mesh(config.mesh.data)
  state = jax.device_put(vae.create_train_state(config, jax.random.PRNGKey(0)),
                         training.replicated(mesh))
  frames = jax.device_put(
      jax.random.randint(jax.random.key(1), (batch_size, 64, 64, 3), 0, 256, jnp.int32
                         ).astype(jnp.uint8), training.data_sharding(mesh, batch_size))
  step = vae.jit_train_step(config, mesh)
  executed = compiled_flops(step, state, frames)
  reference = config.copy_and_resolve_references()
  reference.vae.model.update(transposed_conv='xla', strided_conv='xla')
  abstract = jax.eval_shape(functools.partial(vae.create_train_state, reference),
                            jax.random.PRNGKey(0))
  flop = compiled_flops(vae.jit_train_step(reference, mesh), abstract, frames)
  seconds = median_step_seconds(step, state, frames, steps)
  return Row(f'V train step ({dtype}, {convs} convs)', f'batch {batch_size} of 64x64x3, z {z_size}',
             'images/s', batch_size, seconds, flop, f'executes {executed / 1e9:.3g} GFLOP')
