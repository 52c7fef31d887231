"""The command line of a trainer `train_and_evaluate(config, workdir) -> results`: `--config` (a
path, default a packaged config), `--config.KEY=VALUE` overrides and `--workdir`; prints the
results as JSON. `define_config`, `parse_flags` and the multi-process flags (`join_processes`)
are shared with `experiments/world_models.py`: an unknown override KEY exits with one message
naming it and its closest known key."""

import difflib
import json
import os
import re
import sys
from typing import Any, Callable

from absl import app, flags, logging
from ml_collections import config_flags

from wm_jax.common import distributed
from wm_jax.common.config import flatten

# A multi-process run (several hosts): every process runs the same command with these flags.
_COORDINATOR = flags.DEFINE_string(
    'coordinator_address', None,
    "'host:port' of process 0 of a multi-process run (with --num_processes and --process_id).")
_NUM_PROCESSES = flags.DEFINE_integer('num_processes', None, 'Processes in the run.')
_PROCESS_ID = flags.DEFINE_integer('process_id', None, "This process's index, 0 .. n - 1.")
_MULTIHOST = flags.DEFINE_bool(
    'multihost', False, 'Join the multi-process run the cluster environment describes (Cloud TPU '
    'pod, SLURM, Open MPI, Kubernetes, or JAX_COORDINATOR_ADDRESS, JAX_NUM_PROCESSES, '
    'JAX_PROCESS_ID).')


def join_processes(argv: list[str]) -> None:
  """Joins the multi-process run that `argv`'s --coordinator_address=, --num_processes=,
  --process_id= (or --multihost) describe; nothing without them. Each command calls it before
  importing the models: importing gymnax starts JAX, after which no process can join a run."""
  names = '|'.join(['coordinator_address', 'num_processes', 'process_id', 'multihost',
                    'nomultihost'])
  ours = [arg for arg in argv[1:] if re.fullmatch(rf'--?({names})(=.*)?', arg)]
  flags.FLAGS([argv[0], *ours], known_only=True)
  distributed.initialize(_COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value,
                         auto=_MULTIHOST.value)


def run(train_and_evaluate: Callable[..., dict[str, Any]], default_config: str) -> None:
  """Parses the flags and runs `train_and_evaluate`; `default_config` is a config file's path."""
  config = define_config(
      default_config,
      'Path to an ml_collections config file (a variant after ":", e.g. vqvae_cartpole.py:paper).')
  workdir = flags.DEFINE_string('workdir', None, 'Directory for checkpoints and results.',
                                required=True)

  def main(argv):
    if len(argv) > 1:
      raise app.UsageError(f'Unexpected arguments: {argv[1:]}')
    logging.set_verbosity(logging.WARNING)  # orbax and TFDS log every file at INFO.
    print('results:', json.dumps(train_and_evaluate(config.value, workdir.value)))

  app.run(main, flags_parser=parse_flags)


def define_config(default_config: str, help_string: str) -> flags.FlagHolder:
  """The locked `--config` flag (default the config file `default_config`) and its
  `--config.KEY=VALUE` overrides. Without `--config` on the command line ml_collections loads the
  default config and reads the overrides now, so an unknown KEY exits here (else in
  `parse_flags`)."""
  try:
    return config_flags.DEFINE_config_file('config', default_config, help_string, lock_config=True)
  except (AttributeError, KeyError):  # ml_collections' errors for an unknown override.
    exit_on_unknown_keys(sys.argv, default_config)
    raise


def parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing (`app.run(main, flags_parser=parse_flags)`), an unknown KEY of a
  `--config.KEY=VALUE` exiting with `exit_on_unknown_keys`'s message instead of a traceback."""
  try:
    return app.parse_flags_with_usage(argv)
  except (AttributeError, KeyError):
    path = _config_argument(argv)
    if path is not None:  # Else the overrides were checked in `define_config`.
      exit_on_unknown_keys(argv, path)
    raise


def _config_argument(argv: list[str]) -> str | None:
  """The value of `--config=PATH` (or `--config PATH`) in `argv`, None if absent."""
  for arg, following in zip(argv, [*argv[1:], None]):
    match = re.fullmatch(r'--?config(?:=(.*))?', arg)
    if match:
      return following if match[1] is None else match[1]
  return None


def exit_on_unknown_keys(argv: list[str], config_path: str) -> None:
  """Exits (status 1, no traceback) naming each `--config.KEY` argument of `argv` whose KEY is
  not a key (or a section) of the config file `config_path`, with the closest known key; returns
  if every KEY is known."""
  config = config_flags.config_flags.ConfigFileFlagParser('config').parse(config_path)
  leaves = flatten(config.to_dict())
  known = sorted({key.rsplit('.', depth)[0] for key in leaves for depth in
                  range(key.count('.') + 1)})  # Leaves and sections: 'vae.num_steps', 'vae'.
  unknown = []
  for arg in argv:
    match = re.match(r'--?(?:no)?config\.([^=]+)', arg)
    if match and match[1] not in known:
      close = difflib.get_close_matches(match[1], known, n=1)
      unknown.append(match[1] + (f" (did you mean '{close[0]}'?)" if close else '') + f' in {arg}')
  if unknown:
    sys.exit(f'FATAL Flags parsing error: Unknown config key(s): {", ".join(unknown)}; the keys '
             f'are those of {config_path}.')


def packaged(package, name: str) -> str:
  """The path of config `name` of a configs package (e.g. `wm_jax.videogpt.configs`)."""
  return os.path.join(os.path.dirname(package.__file__), f'{name}.py')
