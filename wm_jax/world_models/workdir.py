"""A World Models workdir: where each stage writes, and which config keys its output depends on.

  collect  -> data/rollouts/             (TFDS: frames, actions, rewards, dones, terminals)
  vae      -> vae/                       (checkpoints/, reconstructions.png, metrics)
  encode   -> data/latents/, data/initial_latents.npz
  mdn      -> mdn/                       (one checkpoint per epoch, metrics)
  controller -> controller/              (CMA-ES state every controller.eval_every generations)
  iterate  -> round_<r>/{data/latents, mdn, controller}  for r = 1 .. iterative.rounds - 1
  evaluate -> results.json, curves.png, dream_vs_real.gif
  .lock: the host and pid of the process writing the workdir (`wm_jax.common.workdir_lock`)

Each stage's output carries the fingerprint of the keys it depends on (its own section and,
through its input, every earlier stage's), so a workdir is never reused under another config:
a stage refuses an input or an output of its own made with other values, except where only a
key that extends an earlier stage's training changed (`EXTENDS`, e.g. `vae.num_steps` raised on
a finished workdir): that stage trains on, and the outputs after it are made again
(`clear_if_stale`).
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from typing import Any, Mapping, Sequence

import ml_collections
import orbax.checkpoint as ocp

from wm_jax.common import training
from wm_jax.common.config import check_same, fingerprint as section_fingerprint
from wm_jax.data import episodes

# Each stage: (the stage whose output it reads, the config sections its own output depends on).
STAGE_INPUTS = {
    'collect': (None, ('env', 'collect')),
    'vae': ('collect', ('vae',)),
    'encode': ('vae', ()),
    'mdn': ('encode', ('mdn',)),
    'controller': ('mdn', ('controller', 'dream')),
    'evaluate': ('controller', ('evaluate',)),
}
# Keys that change how fast a stage runs or what it reports, never what it computes (up to float
# rounding: vae.model.strided_conv; vae.model.transposed_conv predates this list, so stored
# fingerprints hold it and it stays in them).
NEVER_CHANGE_OUTPUT = ('env.num_workers', 'vae.log_every', 'vae.eval_every',
                       'vae.checkpoint_every', 'controller.eval_every', 'controller.eval_episodes',
                       'vae.model.strided_conv')
# Keys added after workdirs were written without them, at the value those workdirs used: left
# out of fingerprints at that value, so the workdirs still resume.
ADDED_LATER = {'mdn.model.dtype': 'float32'}
# The key that only extends a stage's run: its checkpoints resume across a larger value (later
# stages' outputs still depend on it).
EXTENDS = {'vae': 'vae.num_steps', 'mdn': 'mdn.num_epochs',
           'controller': 'controller.num_generations'}


@dataclasses.dataclass(frozen=True)
class Workdir:
  """The paths of a workdir; round r >= 1 of the iterative procedure keeps its latents, M and C
  under `round_<r>/` (round 0 is the workdir itself)."""
  root: str

  def __post_init__(self):
    object.__setattr__(self, 'root', os.path.abspath(self.root))

  def round(self, round_index: int = 0) -> str:
    return self.root if round_index == 0 else os.path.join(self.root, f'round_{round_index}')

  @property
  def rollouts(self) -> str:
    return os.path.join(self.root, episodes.ROLLOUTS_IN_WORKDIR)

  @property
  def vae(self) -> str:
    return os.path.join(self.root, 'vae')

  def latents(self, round_index: int = 0) -> str:
    return os.path.join(self.round(round_index), 'data', 'latents')

  @property
  def initial_latents(self) -> str:
    return os.path.join(self.root, 'data', 'initial_latents.npz')

  def mdn(self, round_index: int = 0) -> str:
    return os.path.join(self.round(round_index), 'mdn')

  def controller(self, round_index: int = 0) -> str:
    return os.path.join(self.round(round_index), 'controller')

  def checkpoints(self, stage: str, round_index: int = 0) -> str:
    """The orbax checkpoint directory of stage 'vae', 'mdn' or 'controller'."""
    parent = self.vae if stage == 'vae' else getattr(self, stage)(round_index)
    return os.path.join(parent, 'checkpoints')

  @property
  def results(self) -> str:
    return os.path.join(self.root, 'results.json')


def producing_stage(stage: str, round_index: int = 0) -> str:
  """The pipeline stage that writes `stage`'s output of round `round_index` (later rounds' M
  and C: the iterate stage)."""
  return stage if round_index == 0 else 'iterate'


def fingerprint(config: ml_collections.ConfigDict, stage: str, round_index: int = 0,
                checkpoints: bool = False) -> dict[str, Any]:
  """The flat config values that `stage`'s output (of round `round_index`) depends on. With
  `checkpoints`, those of the stage's own training: without the key that only extends its run
  (`EXTENDS`), nor, for C trained in the dream, `controller.sample_z`.

  Round r >= 1's M learns from data collected with round r - 1's C, so its fingerprint holds
  that C's (and the `iterative` keys but the round count)."""
  upstream, sections = STAGE_INPUTS[stage]
  if stage == 'mdn' and round_index:
    meta = fingerprint(config, 'controller', round_index - 1)
    sections = sections + ('iterative',)
  elif upstream is not None:
    meta = fingerprint(config, upstream, round_index)
  else:
    meta = {'seed': config.seed}
  ignore = NEVER_CHANGE_OUTPUT + ('iterative.rounds',)
  if checkpoints and stage in EXTENDS:
    ignore += (EXTENDS[stage],)
  if stage == 'controller' and checkpoints and config.controller.train_in == 'dream':
    ignore += ('controller.sample_z',)  # C's training; its real-env scores still depend on it.
  meta.update(section_fingerprint(config, sections, ignore=ignore, added_later=ADDED_LATER))
  if round_index and stage == 'mdn':
    meta['round'] = round_index
  return meta


def latents_fingerprint(config: ml_collections.ConfigDict, round_index: int = 0) -> dict[str, Any]:
  """The fingerprint of round `round_index`'s latent dataset: V's encodings of the random
  rollouts (round 0, the encode stage), or the previous round's C's episodes (iterate)."""
  if round_index == 0:
    return fingerprint(config, 'encode')
  return fingerprint(config, 'mdn', round_index)


def _extended_keys(stored: Mapping[str, Any], current: Mapping[str, Any]) -> list[str]:
  """The keys in which `stored` differs from `current`, if each of them is a key of `EXTENDS`
  raised (a stage trained further); else []."""
  changed = sorted(k for k in set(stored) | set(current) if stored.get(k) != current.get(k))
  extended = all(k in EXTENDS.values() and isinstance(stored.get(k), int)
                 and current.get(k) > stored[k] for k in changed)
  return changed if extended else []


def _changes(keys: Sequence[str], stored: Mapping[str, Any], current: Mapping[str, Any]) -> str:
  return ', '.join(f'{k}={current.get(k)} (was {stored.get(k)})' for k in keys)


def check_input(stored: Mapping[str, Any], current: Mapping[str, Any], where: str,
                producer: str) -> None:
  """Raises a ValueError if a stage's input `where`, made with fingerprint `stored`, was not
  made with the config's `current`: naming the `producer` stage to run where an earlier stage
  only trained further since, else the keys that differ (`check_same`)."""
  extended = _extended_keys(stored, current)
  if extended:
    raise ValueError(f'{where} predates {_changes(extended, stored, current)}: run the '
                     f'{producer} stage first (it makes it again).')
  check_same(stored, current, where)


def check_trained(config: ml_collections.ConfigDict, workdir: str, stage: str,
                  round_index: int = 0) -> None:
  """Raises a ValueError if the checkpoints of `stage` ('vae', 'mdn' or 'controller'; round
  `round_index`) were made with other values than `config`'s (`check_input`)."""
  directory = Workdir(workdir).checkpoints(stage, round_index)
  stored = training.stored_fingerprint(directory)
  if stored is not None:
    check_input(stored, fingerprint(config, stage, round_index, checkpoints=True),
                f'The checkpoints in {directory}', producing_stage(stage, round_index))


def open_rollouts(config: ml_collections.ConfigDict, workdir: str):
  """The workdir's rollout dataset (`episodes.open_episodes`), refused if made with other
  values than `config`'s (`check_input`)."""
  path = Workdir(workdir).rollouts
  source = episodes.open_episodes(path, 'rollout')
  check_input(episodes.read_metadata(path), fingerprint(config, 'collect'),
              f'The rollout dataset in {path}', 'collect')
  return source


def open_latents(config: ml_collections.ConfigDict, workdir: str, round_index: int = 0):
  """Round `round_index`'s latent dataset, refused if made with other values than `config`'s."""
  path = Workdir(workdir).latents(round_index)
  source = episodes.open_episodes(path, 'latent')
  check_input(episodes.read_metadata(path), latents_fingerprint(config, round_index),
              f'The latent dataset in {path}', 'encode' if round_index == 0 else 'iterate')
  return source


def stage_checkpoints(config: ml_collections.ConfigDict, workdir: str, stage: str,
                      round_index: int = 0) -> ocp.CheckpointManager:
  """The orbax manager of the checkpoints of `stage` ('mdn' or 'controller'; round
  `round_index`), whose output folder is first removed if an extension upstream left it stale
  (`clear_if_stale`). Call it once the stage's inputs are checked."""
  directory = Workdir(workdir).checkpoints(stage, round_index)
  meta = fingerprint(config, stage, round_index, checkpoints=True)
  clear_if_stale(training.stored_fingerprint(directory), meta,
                 f'The checkpoint folder {directory}', [os.path.dirname(directory)])
  return training.checkpoint_manager(directory, meta)


def clear_if_stale(stored: Mapping[str, Any] | None, current: Mapping[str, Any], where: str,
                   outputs: Sequence[str]) -> None:
  """Checks a stage's existing output `where`, made with fingerprint `stored` (None: there is
  none yet), against the config's `current`. Where they differ only in keys of `EXTENDS` (an
  earlier stage trained further since), the output is stale: `outputs` (paths) are removed, to
  be made again. Any other difference raises a ValueError naming the keys (`check_same`)."""
  if stored is None:
    return
  extended = _extended_keys(stored, current)
  if not extended:
    check_same(stored, current, where)
    return
  print(f'{where} predates {_changes(extended, stored, current)}: made again.', flush=True)
  for path in outputs:
    if os.path.isdir(path):
      shutil.rmtree(path)
    elif os.path.exists(path):
      os.remove(path)
