"""World Models configs, loadable by name: `get('default')`, `get('doom_take_cover_small')`,
`get('default:tiny')` (a variant after ':'). Every key lives in `default.py`."""

from wm_jax.common import config as config_lib

NAMES = config_lib.names(__name__)


def get(name: str = 'default'):
  return config_lib.load(__name__, name)
