"""The command lines (`experiments/`): an unknown `--config.KEY` override exits during flag
parsing with one message naming the key and its closest known key, without a traceback."""

import os
import subprocess
import sys

import pytest

_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run_cli(module, *args):
  return subprocess.run([sys.executable, '-m', module, '--workdir=unused', *args], cwd=_ROOT,
                        capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize('config', [
    [],  # The default config, loaded (and its overrides checked) when the flag is defined.
    ['--config=wm_jax/world_models/configs/default.py:tiny'],  # Loaded when the flags are parsed.
], ids=['default_config', 'given_config'])
def test_world_models_cli_names_an_unknown_key_and_the_closest_known_one(config):
  result = run_cli('experiments.world_models', *config, '--config.vae.num_step=3',
                   '--config.vae.num_steps=3', '--config.mdn.model.hiden_size', '8')
  assert result.returncode != 0
  assert ("Unknown config key(s): vae.num_step (did you mean 'vae.num_steps'?) in "
          "--config.vae.num_step=3, mdn.model.hiden_size (did you mean 'mdn.model.hidden_size'?) "
          'in --config.mdn.model.hiden_size; the keys are those of ') in result.stderr
  assert 'default.py' in result.stderr.splitlines()[-1]
  assert 'Traceback' not in result.stderr


def test_vqvae_cli_names_an_unknown_key():
  result = run_cli('experiments.train_vqvae',
                   '--config=wm_jax/videogpt/configs/vqvae_cartpole.py:tiny',
                   '--config.train.num_step=3')
  assert result.returncode != 0
  assert ("Unknown config key(s): train.num_step (did you mean 'train.num_steps'?) in "
          '--config.train.num_step=3; the keys are those of '
          'wm_jax/videogpt/configs/vqvae_cartpole.py:tiny.') in result.stderr
  assert 'Traceback' not in result.stderr
