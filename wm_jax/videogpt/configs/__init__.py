"""VideoGPT configs, loadable by name: `get('vqvae_moving_digits')`, `get('videogpt_cartpole')`,
`get('vqvae_cartpole:paper')` (a variant after ':'). Every VQ-VAE key lives in
`vqvae_moving_digits.py`, every prior key in `videogpt_moving_digits.py`."""

from wm_jax.common import config as config_lib

NAMES = config_lib.names(__name__)


def get(name: str):
  return config_lib.load(__name__, name)
