import pytest

from wm_jax.common.config import check_keys, check_same, fingerprint
from wm_jax.videogpt import configs as videogpt_configs
from wm_jax.world_models import configs

DEFAULT_PATH = 'wm_jax/world_models/configs/default.py'


@pytest.mark.parametrize('name', configs.NAMES + ('default:tiny',))
def test_packaged_configs_load_by_name_and_use_known_keys(name):
  check_keys(configs.get(name), configs.get('default'), DEFAULT_PATH)


@pytest.mark.parametrize('name', videogpt_configs.NAMES + (
    'vqvae_cartpole:paper', 'vqvae_cartpole:tiny', 'videogpt_cartpole:tiny'))
def test_videogpt_configs_load_by_name_and_use_known_keys(name):
  """Every VQ-VAE key is in vqvae_moving_digits.py, every prior key in videogpt_moving_digits.py."""
  reference = 'vqvae_moving_digits' if name.startswith('vqvae') else 'videogpt_moving_digits'
  check_keys(videogpt_configs.get(name), videogpt_configs.get(reference), f'{reference}.py')


def test_unknown_config_names_are_named():
  with pytest.raises(ValueError, match=r"No config 'defualt' in wm_jax.world_models.configs; "
                                       r"expected one of \('carracing'"):
    configs.get('defualt')
  with pytest.raises(ValueError, match="default.py takes 'tiny' after ':', got 'small'"):
    configs.get('default:small')


def test_unknown_key_is_named_with_a_suggestion():
  config = configs.get('default')
  config.unlock()
  config.vae.model.z_sise = 64
  with pytest.raises(ValueError, match=r"vae\.model\.z_sise \(did you mean 'vae\.model\.z_size'\?\)"
                                       r"\nKnown keys are those of wm_jax/world_models/configs"):
    check_keys(config, configs.get('default'), DEFAULT_PATH)


def test_check_same_lists_differences():
  a = fingerprint(configs.get('default'), ('env', 'vae'))
  config = configs.get('default')
  config.vae.model.z_size = 64
  b = fingerprint(config, ('env', 'vae'))
  check_same(a, a, 'x')
  with pytest.raises(ValueError, match=r'vae\.model\.z_size: stored 32, config 64'):
    check_same(a, b, 'The checkpoints')


def test_fingerprints_hold_the_keys_each_output_depends_on():
  from wm_jax.world_models.workdir import fingerprint as stage_fingerprint
  config = configs.get('default')
  # C trained in the dream resumes across sample_z; its real scores (evaluate, later rounds'
  # data) depend on it.
  assert 'controller.sample_z' not in stage_fingerprint(config, 'controller', checkpoints=True)
  assert 'controller.sample_z' in stage_fingerprint(config, 'evaluate')
  assert 'controller.sample_z' in stage_fingerprint(config, 'mdn', round_index=1)
  # Episode keys are split per collection chunk: the chunk size changes the data.
  assert 'collect.episodes_per_chunk' in stage_fingerprint(config, 'vae', checkpoints=True)
  assert 'vae.num_steps' not in stage_fingerprint(config, 'vae', checkpoints=True)
  assert 'vae.num_steps' in stage_fingerprint(config, 'encode')
