"""Trains VideoGPT's prior (stage 2) over a trained VQ-VAE's codes, samples it and scores it
(`wm_jax.videogpt.prior.train_and_evaluate`).

  python -m experiments.train_videogpt --workdir=runs/videogpt_digits \
      [--config=wm_jax/videogpt/configs/videogpt_moving_digits.py] \
      [--config.vqvae.workdir=runs/vqvae_digits]

Resumes from the latest checkpoint in the workdir; a workdir written with a different
configuration (or over a different VQ-VAE checkpoint) is refused with the differing keys.
Prints the final scores (test bits/dim, sample FVD, prediction PSNR/SSIM per horizon), also in
workdir/results.json; samples.gif / predictions.gif show the videos.
"""

import sys

from experiments import trainer_cli

if __name__ == '__main__':
  trainer_cli.join_processes(sys.argv)  # Before the models' imports start JAX.
from wm_jax import videogpt  # noqa: E402

if __name__ == '__main__':
  trainer_cli.run(videogpt.prior.train_and_evaluate,
                  trainer_cli.packaged(videogpt.configs, 'videogpt_moving_digits'))
