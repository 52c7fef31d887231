"""Trains VideoGPT's video VQ-VAE (stage 1) and writes its reconstruction scores.

  python -m experiments.train_vqvae --workdir=runs/vqvae_digits \
      [--config=experiments/configs/vqvae_moving_digits.py] [--config.train.num_steps=3000]

Resumes from the latest checkpoint in the workdir; a workdir written with a different
configuration is refused with the differing keys. Prints the final test scores (PSNR, SSIM,
MSE, codebook perplexity and usage), also in workdir/results.json.
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from wm_jax.videogpt.configs import vqvae_moving_digits
from wm_jax.common.config import check_keys
from wm_jax.videogpt import vqvae

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), 'configs', 'vqvae_moving_digits.py'),
    'Path to an ml_collections config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.',
                               required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO.
  config = _CONFIG.value
  check_keys(config, vqvae_moving_digits.get_config(), 'experiments/configs/vqvae_moving_digits.py')
  results = vqvae.train_and_evaluate(config, _WORKDIR.value)
  print('results:', json.dumps(results))


if __name__ == '__main__':
  app.run(main)
