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
through its input, every earlier stage's), so a workdir is never reused under another config.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import ml_collections

from wm_jax.common.config import fingerprint as section_fingerprint
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
# Keys that change how fast a stage runs or what it reports, never what it computes.
NEVER_CHANGE_OUTPUT = ('env.num_workers', 'vae.log_every', 'vae.eval_every',
                       'vae.checkpoint_every', 'controller.eval_every', 'controller.eval_episodes')
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
  meta.update(section_fingerprint(config, sections, ignore=ignore))
  if round_index and stage == 'mdn':
    meta['round'] = round_index
  return meta
