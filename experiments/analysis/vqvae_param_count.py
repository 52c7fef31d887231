"""Parameter counts of VideoGPT's video VQ-VAE (no compute: shapes only).

  python -m experiments.analysis.vqvae_param_count [--hidden=240] [--residual_units=128]
      [--num_res_layers=4] [--num_codes=1024] [--code_dim=256] [--downsample=2,2,2]
      [--frames=16] [--resolution=64]

The defaults are the paper's BAIR configuration (table 8). Trained parameters are counted with
and without the paper's axial position embeddings (the authors' code has none); the EMA
codebook (codes, counts, sums) and BatchNorm running statistics are state, listed apart.
"""

import jax
import jax.numpy as jnp
from absl import app, flags

from wm_jax.videogpt.models.video_vqvae import VideoVQVAE

_HIDDEN = flags.DEFINE_integer('hidden', 240, 'Hidden channels.')
_RESIDUAL = flags.DEFINE_integer('residual_units', 128, 'Residual bottleneck channels.')
_LAYERS = flags.DEFINE_integer('num_res_layers', 4, 'Attention residual blocks per side.')
_CODES = flags.DEFINE_integer('num_codes', 1024, 'Codebook size.')
_CODE_DIM = flags.DEFINE_integer('code_dim', 256, 'Code vector size.')
_DOWNSAMPLE = flags.DEFINE_list('downsample', ['2', '2', '2'], 'T, H, W downsampling.')
_FRAMES = flags.DEFINE_integer('frames', 16, 'Frames per clip.')
_RESOLUTION = flags.DEFINE_integer('resolution', 64, 'Frame height and width.')


def count(tree) -> int:
  return sum(x.size for x in jax.tree.leaves(tree))


def main(argv):
  del argv
  videos = jnp.zeros((1, _FRAMES.value, _RESOLUTION.value, _RESOLUTION.value, 3))
  for position_embeddings in (True, False):
    model = VideoVQVAE(_HIDDEN.value, _RESIDUAL.value, _LAYERS.value, _CODES.value,
                       _CODE_DIM.value, tuple(int(d) for d in _DOWNSAMPLE.value),
                       position_embeddings=position_embeddings)
    variables = jax.eval_shape(model.init, jax.random.key(0), videos)
    print(f'position embeddings {position_embeddings!s:5}: {count(variables["params"]):,} '
          f'trained parameters (encoder {count(variables["params"]["encoder"]):,}, decoder '
          f'{count(variables["params"]["decoder"]):,}); codebook state '
          f'{count(variables["codebook"]):,} values, BatchNorm statistics '
          f'{count(variables["batch_stats"]):,}')


if __name__ == '__main__':
  app.run(main)
