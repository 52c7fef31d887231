"""Checks on run configurations (`ml_collections.ConfigDict`): unknown keys and reuse of a workdir."""

from __future__ import annotations

import difflib
import json
from typing import Any, Mapping

import ml_collections


def flatten(tree: Mapping[str, Any], prefix: str = '') -> dict[str, Any]:
  """{'a': {'b': 1}} -> {'a.b': 1}."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, Mapping):
      flat.update(flatten(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
               reference_path: str = 'experiments/configs/default.py') -> None:
  """Raises a ValueError naming every key of `config` that `reference` lacks (typos included)."""
  known = flatten(reference.to_dict())
  unknown = sorted(set(flatten(config.to_dict())) - set(known))
  if unknown:
    lines = []
    for key in unknown:
      close = difflib.get_close_matches(key, known, n=1)
      lines.append(f'  {key}' + (f" (did you mean '{close[0]}'?)" if close else ''))
    raise ValueError('Unknown config keys:\n' + '\n'.join(lines) +
                     f'\nKnown keys are those of {reference_path}.')


# Keys that change how fast a stage runs, never what it writes: no fingerprint holds them.
RUNTIME_KEYS = ('env.num_workers',)


def fingerprint(config: ml_collections.ConfigDict, sections: tuple[str, ...],
                ignore: tuple[str, ...] = ()) -> dict[str, Any]:
  """The flat JSON-able values of `sections` that a stage's output depends on, minus `ignore`
  and `RUNTIME_KEYS`."""
  ignore = tuple(ignore) + RUNTIME_KEYS
  flat = flatten({name: config[name].to_dict() if isinstance(config[name], ml_collections.ConfigDict)
                  else config[name] for name in sections})
  # Through JSON, so that it compares equal to a stored copy (tuples become lists).
  return json.loads(json.dumps({key: value for key, value in flat.items() if key not in ignore}))


def check_same(saved: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
  """Raises a ValueError if `where` was written with a configuration other than `current`."""
  keys = sorted(set(saved) | set(current))
  diffs = [f'  {k}: stored {saved.get(k, "<absent>")!r}, config {current.get(k, "<absent>")!r}'
           for k in keys if saved.get(k) != current.get(k)]
  if diffs:
    raise ValueError(
        f'{where} was written with a different configuration:\n' + '\n'.join(diffs) +
        '\nUse a fresh --workdir, or the configuration it was written with.')
