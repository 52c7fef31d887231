"""The paper's UCF-101 VQ-VAE (VideoGPT, table 8): 16x64x64 -> 4x32x32, downsampling (4,2,2).

Frames of TFDS's ucf101 (256x256) are centre-cropped and resized to 64x64. The dataset downloads
its videos: a GPU/TPU job.

  python -m experiments.train_vqvae --config=wm_jax/videogpt/configs/vqvae_ucf101.py \
      --workdir=runs/vqvae_ucf101
"""

from wm_jax.videogpt.configs import vqvae_bair


def get_config():
  config = vqvae_bair.get_config()
  config.data.name = 'ucf101'
  config.model.downsample = (4, 2, 2)
  return config
