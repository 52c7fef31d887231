"""Where VideoGPT's train steps spend their time on this device: each kind of layer of the
VQ-VAE and of the prior (benchmark sizes: `vqvae_moving_digits`, `videogpt_moving_digits` at
4x16x16 codes), alone, forward and gradient, beside the whole train step (timed as
BENCHMARKS.md's rows).

  python -m experiments.analysis.videogpt_parts [--repeats=5]

Each part is timed as jax.grad of sum(sin(output)) with respect to its parameters and its input
(the VQ-VAE's first layer, which reads data: parameters only), median of `--repeats` calls after
a warm-up; GFLOP is XLA's cost analysis of what runs. "x n" is how often the model runs the part
per step. Timed alone, with their own input gradients and loss, the parts rank the layers by
speed; they do not partition the step (their n x ms can sum to more than it). The VQ-VAE runs
its default `conv_impl='folded'`; its stride-1 parts are also timed as XLA's 3D convolutions
(`conv_impl='xla'`; XLA's strided ones take tens of seconds, docs/results.md).
"""

import functools
import math

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

from experiments.benchmarks.common import median_seconds
from experiments.benchmarks.videogpt_sampling import prior_rows
from experiments.benchmarks.vqvae_throughput import vqvae_train_step
from wm_jax.videogpt import configs, vqvae
from wm_jax.videogpt.models import sparse_attention
from wm_jax.videogpt.models.strided_conv3d import DownConv3D, UpConv3D
from wm_jax.videogpt.models.video_vqvae import AttentionResidualBlock, conv3d

_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per measurement.')


def part(name: str, count: int, apply, params, x, input_gradient: bool = True) -> float:
  """Times the gradient of sum(sin(apply(params, x))); prints a row; returns count x ms."""
  loss = lambda params, x: jnp.sum(jnp.sin(apply(params, x)))
  gradient = jax.jit(jax.grad(loss, argnums=(0, 1) if input_gradient else 0))
  compiled = gradient.lower(params, x).compile()
  ms = 1e3 * median_seconds(lambda: compiled(params, x), _REPEATS.value)
  flop = compiled.cost_analysis()['flops']
  print(f'| {name} | x {count} | {ms:.1f} | {flop / 1e9:.2f} | {flop / ms / 1e6:.1f} |',
        flush=True)
  return count * ms


def module_part(name, count, module, shape, train=None, input_gradient=True) -> float:
  x = jax.random.normal(jax.random.key(0), shape)
  kwargs = {} if train is None else {'train': train}
  variables = module.init(jax.random.key(1), x, **kwargs)
  def apply(variables, x):
    if train is None:
      return module.apply(variables, x)
    return module.apply(variables, x, **kwargs, mutable=['batch_stats'])[0]
  return part(name, count, apply, variables, x, input_gradient)


def vqvae_parts() -> None:
  config = configs.get('vqvae_moving_digits')
  m, batch, impl = config.model, config.data.batch_size, config.model.conv_impl
  t, size, _ = vqvae.video_shape(config)[:3]
  if tuple(m.downsample) != (4, 4, 4) or m.attention:
    raise ValueError('The parts listed are those of the default vqvae_moving_digits model.')
  step_ms = 1e3 * vqvae_train_step(config, steps=_REPEATS.value).seconds  # The benchmark's row.
  print(f'\nVQ-VAE, conv_impl={impl!r}: train step {step_ms:.1f} ms (batch {batch})\n')
  print('| part | per step | ms | GFLOP | GFLOP/s |\n|---|---|---|---|---|')
  h = m.hidden
  total = module_part('down conv 1 -> hidden, stride 2', 1, DownConv3D(h, (2, 2, 2), impl),
                      (batch, t, size, size, 1), input_gradient=False)
  total += module_part('down conv hidden -> hidden, stride 2', 1, DownConv3D(h, (2, 2, 2), impl),
                       (batch, t // 2, size // 2, size // 2, h))
  latent = (batch, t // 4, size // 4, size // 4, h)
  for form in (impl, 'xla'):
    ms = module_part(f'conv k3 hidden -> hidden, {form}', 1, conv3d(h, 3, jnp.float32, form),
                     latent)
    ms += module_part(f'residual block (BN, ReLU, k3, BN, ReLU, k1), {form}',
                      2 * m.num_res_layers,
                      AttentionResidualBlock(h, m.residual_units, False, conv_impl=form),
                      latent, train=True)
    total += ms if form == impl else 0.0
  total += module_part('up conv hidden -> hidden, stride 2', 1, UpConv3D(h, (2, 2, 2), impl),
                       latent)
  total += module_part('up conv hidden -> 1, stride 2', 1, UpConv3D(1, (2, 2, 2), impl),
                       (batch, t // 2, size // 2, size // 2, h))
  print(f'\nparts: {total:.1f} ms of the step\'s {step_ms:.1f} ms')


def prior_parts() -> None:
  config = configs.get('videogpt_moving_digits')
  m, batch, latent = config.model, config.data.batch_size, (4, 16, 16)
  length = math.prod(latent)
  step_ms = 1e3 * prior_rows(config, latent, steps=_REPEATS.value, sampling=False)[0].seconds
  print(f'\nprior: train step {step_ms:.1f} ms (batch {batch}, {length} tokens each)\n')
  print('| part | per step | ms | GFLOP | GFLOP/s |\n|---|---|---|---|---|')
  heads = m.num_heads
  qkv = jax.random.normal(jax.random.key(4), (3, batch, length, heads, m.width // heads))
  total = 0.0
  for impl in ('block_sparse', 'masked'):
    attend = functools.partial(sparse_attention.causal_attention, latent_shape=latent,
                               pattern=m.attention, implementation=impl,
                               block_size=m.block_size, num_local_blocks=m.num_local_blocks)
    ms = part(f'{m.attention} attention, {impl}', m.num_layers,
              lambda _, qkv: attend(*qkv), {}, qkv)
    total += ms if impl == m.attention_impl else 0.0
  x = jax.random.normal(jax.random.key(5), (batch, length, m.width))
  dense = nn.Dense(m.mlp_ratio * m.width)
  total += part(f'MLP in ({m.width} -> {m.mlp_ratio * m.width})', m.num_layers, dense.apply,
                dense.init(jax.random.key(6), x), x)
  print(f'\nparts ({m.attention_impl} attention, MLP in): {total:.1f} ms of the step\'s '
        f'{step_ms:.1f} ms')


def main(argv):
  del argv
  vqvae_parts()
  prior_parts()


if __name__ == '__main__':
  app.run(main)
