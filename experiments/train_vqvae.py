"""Trains VideoGPT's video VQ-VAE (stage 1) and writes its reconstruction scores
(`wm_jax.videogpt.vqvae.train_and_evaluate`).

  python -m experiments.train_vqvae --workdir=runs/vqvae_digits \
      [--config=wm_jax/videogpt/configs/vqvae_moving_digits.py] [--config.train.num_steps=3000]

Resumes from the latest checkpoint in the workdir; a workdir written with a different
configuration is refused with the differing keys. Prints the final test scores (PSNR, SSIM,
MSE, codebook perplexity and usage), also in workdir/results.json.
"""

import sys

from experiments import trainer_cli

if __name__ == '__main__':
  trainer_cli.join_processes(sys.argv)  # Before the models' imports start JAX.
from wm_jax import videogpt  # noqa: E402

if __name__ == '__main__':
  trainer_cli.run(videogpt.vqvae.train_and_evaluate,
                  trainer_cli.packaged(videogpt.configs, 'vqvae_moving_digits'))
