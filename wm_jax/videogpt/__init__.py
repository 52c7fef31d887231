"""VideoGPT (Yan et al., 2021): a video VQ-VAE (`models/video_vqvae.py`, trained by
`vqvae.py`) and a GPT prior with sparse axial attention over its codes (`models/video_gpt.py`,
trained by `prior.py` over the frozen VQ-VAE of `latent_prior.py`, sampled and scored by
`sampling.py`). `configs.get(name)` loads a packaged config.

  from wm_jax import videogpt
  videogpt.vqvae.train_and_evaluate(videogpt.configs.get('vqvae_moving_digits'), 'runs/vqvae')
  config = videogpt.configs.get('videogpt_moving_digits')
  config.vqvae.workdir = 'runs/vqvae'
  videogpt.prior.train_and_evaluate(config, 'runs/prior')
"""

from wm_jax.videogpt import configs, prior, sampling, vqvae

__all__ = ['configs', 'prior', 'sampling', 'vqvae']
