"""The command line of a trainer `train_and_evaluate(config, workdir) -> results`: `--config` (a
path, default a packaged config), `--config.KEY=VALUE` overrides and `--workdir`; prints the
results as JSON."""

import json
import os
from typing import Any, Callable

from absl import app, flags, logging
from ml_collections import config_flags


def run(train_and_evaluate: Callable[..., dict[str, Any]], default_config: str) -> None:
  """Parses the flags and runs `train_and_evaluate`; `default_config` is a config file's path."""
  config = config_flags.DEFINE_config_file(
      'config', default_config,
      'Path to an ml_collections config file (a variant after ":", e.g. vqvae_cartpole.py:paper).',
      lock_config=True)
  workdir = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.',
                                required=True)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO.
    print('results:', json.dumps(train_and_evaluate(config.value, workdir.value)))

  app.run(main)


def packaged(package, name: str) -> str:
  """The path of config `name` of a configs package (e.g. `wm_jax.videogpt.configs`)."""
  return os.path.join(os.path.dirname(package.__file__), f'{name}.py')
