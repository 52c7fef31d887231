"""The World Models pipeline from the command line (`wm_jax.world_models.run`).

  python -m experiments.world_models --workdir=runs/cartpole \
      [--config=wm_jax/world_models/configs/default.py] [--config.vae.num_steps=4000] [--stage=vae]
"""

import json
import os
import sys

from absl import app, flags, logging

from experiments import trainer_cli

if __name__ == '__main__':
  trainer_cli.join_processes(sys.argv)  # Before the models' imports start JAX.
from wm_jax import world_models  # noqa: E402

_CONFIG = trainer_cli.define_config(
    trainer_cli.packaged(world_models.configs, 'default'),
    'Path to an ml_collections config file (a variant after ":", e.g. default.py:tiny).')
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for datasets, checkpoints and results.',
                               required=True)
_STAGE = flags.DEFINE_enum('stage', 'all', ['all', *world_models.STAGES],
                           'Run one stage, or all in order.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO.
  stages = None if _STAGE.value == 'all' else [_STAGE.value]
  results = world_models.run(_CONFIG.value, _WORKDIR.value, stages)
  print('stage seconds:', json.dumps({name: r['seconds'] for name, r in results.items()}))
  print(f'outputs in {os.path.abspath(_WORKDIR.value)} (map in wm_jax/world_models/workdir.py)')


if __name__ == '__main__':
  app.run(main, flags_parser=trainer_cli.parse_flags)
