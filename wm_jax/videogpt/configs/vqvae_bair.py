"""The paper's BAIR robot pushing VQ-VAE (VideoGPT, table 8): 16x64x64 -> 8x32x32.

Hidden 240, 128 residual units, 4 attention residual layers, 1024 x 256 codes (14,336,787
parameters with the axial position embeddings, printed by
`python -m experiments.analysis.vqvae_param_count`). Needs TFDS's bair_robot_pushing_small,
which downloads its data (and needs TensorFlow to prepare it): a GPU/TPU job.

  python -m experiments.train_vqvae --config=wm_jax/videogpt/configs/vqvae_bair.py \
      --workdir=runs/vqvae_bair
"""

from wm_jax.videogpt.configs import vqvae_moving_digits


def get_config():
  config = vqvae_moving_digits.get_config()
  config.data.name = 'bair_robot_pushing_small'
  config.data.channels = 3
  config.data.batch_size = 32
  config.model.update(hidden=240, residual_units=128, num_res_layers=4, num_codes=1024,
                      code_dim=256, downsample=(2, 2, 2), attention=True)
  config.train.update(num_steps=100_000, log_every=100, eval_every=5_000,
                      checkpoint_every=5_000)
  config.eval.fvd_trials = 4
  return config
