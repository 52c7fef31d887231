"""Run configurations (`ml_collections.ConfigDict`): loading a packaged config by name, checks on
unknown keys, and the fingerprints that guard a workdir against reuse under another config."""

from __future__ import annotations

import difflib
import importlib
import json
import pkgutil
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


def unflatten(flat: dict[str, Any]) -> dict[str, Any]:
  """{'a.b': 1} -> {'a': {'b': 1}}; lists (tuples before their trip through JSON) as tuples, so
  that the modules built from the config stay hashable."""
  tree: dict[str, Any] = {}
  for key, value in flat.items():
    *parents, leaf = key.split('.')
    node = tree
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = tuple(value) if isinstance(value, list) else value
  return tree


def names(package: str) -> tuple[str, ...]:
  """The config modules of `package` (e.g. 'wm_jax.world_models.configs')."""
  module = importlib.import_module(package)
  return tuple(sorted(m.name for m in pkgutil.iter_modules(module.__path__)))


def load(package: str, name: str) -> ml_collections.ConfigDict:
  """Config `name` of `package`: its module's `get_config()`, or `get_config(variant)` for
  'name:variant' (as `--config=path/name.py:variant` on the command line)."""
  module_name, _, variant = name.partition(':')
  if module_name not in names(package):
    raise ValueError(f'No config {module_name!r} in {package}; expected one of {names(package)}.')
  module = importlib.import_module(f'{package}.{module_name}')
  return module.get_config(variant) if variant else module.get_config()


def check_keys(config: ml_collections.ConfigDict, reference: ml_collections.ConfigDict,
               reference_path: str) -> None:
  """Raises a ValueError naming every key of `config` that `reference` lacks (typos included);
  `reference_path` names where the known keys are listed."""
  known = flatten(reference.to_dict())
  unknown = sorted(set(flatten(config.to_dict())) - set(known))
  if unknown:
    lines = []
    for key in unknown:
      close = difflib.get_close_matches(key, known, n=1)
      lines.append(f'  {key}' + (f" (did you mean '{close[0]}'?)" if close else ''))
    raise ValueError('Unknown config keys:\n' + '\n'.join(lines) +
                     f'\nKnown keys are those of {reference_path}.')


_BOUNDS = {'>= 1': lambda v: v >= 1, '>= 0': lambda v: v >= 0, '> 0': lambda v: v > 0}


def check_ranges(config: ml_collections.ConfigDict, rules: Mapping[str, str]) -> None:
  """Raises a ValueError naming every key whose value breaks its rule ('>= 1', '>= 0' or
  '> 0'; {'vae.num_steps': '>= 1', ...}), before anything runs on it."""
  values = flatten(config.to_dict())
  broken = [f'  {key} = {values[key]!r}: must be {rule}' for key, rule in rules.items()
            if not _BOUNDS[rule](values[key])]
  if broken:
    raise ValueError('Config values out of range:\n' + '\n'.join(broken))


def fingerprint(config: ml_collections.ConfigDict, sections: tuple[str, ...],
                ignore: tuple[str, ...] = (),
                added_later: Mapping[str, Any] | None = None) -> dict[str, Any]:
  """The flat JSON-able values of `sections` that an output depends on, minus `ignore`.

  added_later: keys added to the configs after outputs were written without them, each with
  the value those outputs were computed with ({'model.dtype': 'float32'}). A key at that value
  is left out, so the fingerprints stored by older runs still match.
  """
  flat = flatten({name: config[name].to_dict() if isinstance(config[name], ml_collections.ConfigDict)
                  else config[name] for name in sections})
  added_later = added_later or {}
  kept = {key: value for key, value in flat.items()
          if key not in ignore and not (key in added_later and value == added_later[key])}
  # Through JSON, so that it compares equal to a stored copy (tuples become lists).
  return json.loads(json.dumps(kept))


def check_same(saved: Mapping[str, Any], current: Mapping[str, Any], where: str) -> None:
  """Raises a ValueError if `where` was written with a configuration other than `current`."""
  keys = sorted(set(saved) | set(current))
  diffs = [f'  {k}: stored {saved.get(k, "<absent>")!r}, config {current.get(k, "<absent>")!r}'
           for k in keys if saved.get(k) != current.get(k)]
  if diffs:
    raise ValueError(
        f'{where} was written with a different configuration:\n' + '\n'.join(diffs) +
        '\nUse a fresh --workdir, or the configuration it was written with.')
