"""Where V's train step spends its time: each of its 8 convolutions alone, forward and gradient,
in XLA's form and in both matmul forms, with the form `form='auto'` picks.

  python -m experiments.analysis.v_conv_forms [--batch_size=100] [--repeats=5]

The gradient is taken with respect to the parameters and the input (the first layer's input is
data: parameters only), of sum(sin(y)) so that every output value matters. Times are medians
after a warm-up call; FLOP/s is XLA's cost analysis of what each form executes over its time.
"""

import flax.linen as nn
import jax
import jax.numpy as jnp
from absl import app, flags

from experiments.benchmarks.common import median_seconds
from wm_jax.world_models.models.conv_vae import (MatmulConv, MatmulConvTranspose,
                                                 matmul_conv_form)

_BATCH = flags.DEFINE_integer('batch_size', 100, 'Frames per batch (paper: 100).')
_REPEATS = flags.DEFINE_integer('repeats', 5, 'Timed calls per measurement.')

# (kind, input size, input channels, output channels, kernel): V's layers in order.
LAYERS = [('conv', 64, 3, 32, 4), ('conv', 31, 32, 64, 4), ('conv', 14, 64, 128, 4),
          ('conv', 6, 128, 256, 4), ('deconv', 1, 1024, 128, 5), ('deconv', 5, 128, 64, 5),
          ('deconv', 13, 64, 32, 6), ('deconv', 30, 32, 3, 6)]


def _median_ms(fn, *args) -> float:
  return 1e3 * median_seconds(lambda: fn(*args), _REPEATS.value)


def _module(kind: str, features: int, kernel: int, form: str) -> nn.Module:
  if form == 'xla':
    layer = nn.Conv if kind == 'conv' else nn.ConvTranspose
    return layer(features, (kernel, kernel), strides=(2, 2), padding='VALID')
  layer = MatmulConv if kind == 'conv' else MatmulConvTranspose
  return layer(features, kernel, form=form)


def main(argv):
  del argv
  print('layer | form | forward ms | gradient ms | gradient GFLOP/s')
  for index, (kind, size, channels, features, kernel) in enumerate(LAYERS):
    x = jax.random.normal(jax.random.key(0), (_BATCH.value, size, size, channels))
    params = _module(kind, features, kernel, 'auto').init(jax.random.key(1), x)
    argnums = 0 if index == 0 else (0, 1)
    for form in ('xla', 'gathered', 'overlap_add'):
      module = _module(kind, features, kernel, form)
      forward = jax.jit(module.apply)
      gradient = jax.jit(jax.grad(lambda p, x: jnp.sum(jnp.sin(module.apply(p, x))),
                                  argnums=argnums))
      flop = gradient.lower(params, x).compile().cost_analysis()['flops']
      gradient_ms = _median_ms(gradient, params, x)
      print(f'{kind} {size}x{size}x{channels} -> {features} (k{kernel}) | {form} | '
            f'{_median_ms(forward, params, x):.1f} | {gradient_ms:.1f} | '
            f'{flop / gradient_ms / 1e6:.0f}')
    print(f"  form='auto' takes "
          f"{matmul_conv_form(size, size, channels, features, kernel, 2, kind == 'deconv')}")


if __name__ == '__main__':
  app.run(main)
