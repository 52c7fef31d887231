"""World Models pipeline: collect -> train V -> encode -> train M -> train C in the dream ->
(iterate: collect with C, retrain M and C, for `iterative.rounds` - 1 rounds) -> evaluate C in
the real environment.

  python -m experiments.world_models --workdir=runs/cartpole [--config=experiments/configs/default.py]
      [--config.vae.num_steps=4000] [--stage=vae]

Each stage is resumable and skipped when its output in the workdir is complete; a workdir written
with a different configuration is refused with the differing keys.
"""

import json
import os
import time

from absl import app, flags, logging
from ml_collections import config_flags

from wm_jax.world_models.configs import default
from wm_jax.common.config import check_keys
from wm_jax.data.collect import collect_dataset
from wm_jax.world_models.stages import controller, evaluate, iterate, mdn, vae

STAGES = {
    'collect': collect_dataset,
    'vae': vae.train_and_evaluate,
    'encode': vae.encode_dataset,
    'mdn': mdn.train_and_evaluate,
    'controller': controller.train_and_evaluate,
    'iterate': iterate.run_rounds,
    'evaluate': evaluate.evaluate,
}

_CONFIG = config_flags.DEFINE_config_file(
    'config', os.path.join(os.path.dirname(__file__), 'configs', 'default.py'),
    'Path to an ml_collections config file.', lock_config=True)
_WORKDIR = flags.DEFINE_string('workdir', None, 'Directory for datasets, checkpoints and results.',
                               required=True)
_STAGE = flags.DEFINE_enum('stage', 'all', ['all', *STAGES], 'Run one stage, or all in order.')


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
  logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO.
  config = _CONFIG.value
  check_keys(config, default.get_config())
  workdir = os.path.abspath(_WORKDIR.value)
  os.makedirs(workdir, exist_ok=True)
  stages = list(STAGES) if _STAGE.value == 'all' else [_STAGE.value]
  timings = {}
  for name in stages:
    start = time.perf_counter()
    STAGES[name](config, workdir)
    timings[name] = round(time.perf_counter() - start, 1)
    print(f'stage {name} done in {timings[name]} s', flush=True)
  print('stage seconds:', json.dumps(timings))
  print(f'outputs in {workdir} (map in README.md)')


if __name__ == '__main__':
  app.run(main)
