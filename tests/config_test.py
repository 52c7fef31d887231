import pytest

from wm_jax.world_models.configs import default
from wm_jax.common.config import check_keys, check_same, fingerprint


def test_default_config_passes():
  check_keys(default.get_config(), default.get_config())


def test_unknown_key_is_named_with_a_suggestion():
  config = default.get_config()
  config.unlock()
  config.vae.z_sise = 64
  with pytest.raises(ValueError, match=r"vae\.z_sise \(did you mean 'vae\.z_size'\?\)"):
    check_keys(config, default.get_config())


def test_check_same_lists_differences():
  a = fingerprint(default.get_config(), ('env', 'vae'))
  config = default.get_config()
  config.vae.z_size = 64
  b = fingerprint(config, ('env', 'vae'))
  check_same(a, a, 'x')
  with pytest.raises(ValueError, match=r'vae\.z_size: stored 32, config 64'):
    check_same(a, b, 'The checkpoints')


@pytest.mark.parametrize('name', ['doom_take_cover', 'doom_take_cover_small', 'carracing',
                                  'carracing_dream'])
def test_world_models_configs_use_known_keys(name):
  import importlib
  config = importlib.import_module(f'wm_jax.world_models.configs.{name}').get_config()
  check_keys(config, default.get_config())
