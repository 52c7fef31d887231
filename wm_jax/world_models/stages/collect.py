"""The collect stage: `collect.num_episodes` random-policy episodes of `env.name` (the paper's
policy: a random action held 1..`collect.max_action_repeat` frames) into the workdir's TFDS
rollout dataset (`wm_jax.data.collect` collects, `wm_jax.data.episodes` stores)."""

from __future__ import annotations

import jax
import ml_collections
import numpy as np

from wm_jax.common.config import check_same
from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.data import episodes as episodes_lib
from wm_jax.data.collect import write_random_episodes
from wm_jax.world_models.stages import mdn
from wm_jax.world_models.workdir import Workdir, fingerprint
from wm_jax.world_models.world import real_env


@holds_workdir_lock
def collect(config: ml_collections.ConfigDict, workdir: str) -> dict[str, int]:
  """Collects the rollouts unless they are complete (and made with this config); refuses a new
  dataset too short for M's epoch (before V trains on it). Returns {'episodes': how many the
  dataset holds}."""
  path = Workdir(workdir).rollouts
  meta = fingerprint(config, 'collect')
  if episodes_lib.is_complete(path):
    check_same(episodes_lib.read_metadata(path), meta, f'The rollout dataset in {path}')
  else:
    real = real_env(config)
    lengths = write_random_episodes(config, real.env, real.params, path, rollout_spec(config),
                                    meta)
    mdn.check_steps(sum(lengths), config.mdn.num_streams, config.mdn.chunk_length,
                    f'The {len(lengths)} episodes collected in {path}')
  return episodes_lib.summary(path)



def rollout_spec(config: ml_collections.ConfigDict) -> episodes_lib.EpisodeSpec:
  """The rollout dataset's fields: frames [T, 64, 64, 3] uint8, the env's actions, rewards,
  dones and terminals [T]."""
  action = jax.eval_shape(real_env(config).action_space.sample, jax.random.key(0))
  return {'frames': ((64, 64, 3), np.uint8), 'actions': (action.shape, action.dtype),
          'rewards': ((), np.float32), 'dones': ((), np.bool_), 'terminals': ((), np.bool_)}
