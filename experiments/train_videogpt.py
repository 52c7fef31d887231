"""Trains VideoGPT's prior (stage 2) over a trained VQ-VAE's codes, samples it and scores it.

  python -m experiments.train_videogpt --workdir=runs/videogpt_digits \
      [--config=experiments/configs/videogpt_moving_digits.py] [--config.vqvae.workdir=runs/vqvae_digits]

Resumes from the latest checkpoint in the workdir; a workdir written with a different
configuration (or over a different VQ-VAE checkpoint) is refused with the differing keys.
Prints the final scores (test bits/dim, sample FVD, prediction PSNR/SSIM per horizon), also in
workdir/results.json; samples.gif / predictions.gif show the videos.
"""

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

from wm_jax.prior_lib.configs import videogpt_moving_digits
from wm_jax.common.config import check_keys
from wm_jax.videogpt import prior as prior_lib

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), 'configs', 'videogpt_moving_digits.py'),
    'Path to an ml_collections config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.',
                               required=True)


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO.
  config = _CONFIG.value
  check_keys(config, videogpt_moving_digits.get_config(),
             'experiments/configs/videogpt_moving_digits.py')
  results = prior_lib.train_and_evaluate(config, _WORKDIR.value)
  print('results:', json.dumps(results))


if __name__ == '__main__':
  app.run(main)
