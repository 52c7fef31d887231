"""The paper's iterative procedure (section 5): collect with the current C, retrain M, retrain C.

Random-policy rollouts only show M the states a random policy reaches: in CartPole, episodes of
tens of steps. A controller trained in that dream then meets states and LSTM memories in the
real environment that M never modelled. Each round r = 1 .. `iterative.rounds` - 1:
1. runs the previous round's C in the real environment (frames through V and M, jitted and
   vmapped over `iterative.num_episodes` episodes) with an `iterative.epsilon` chance per step of
   a uniformly random action (exploration), recording V's mu and log-variance of every frame
   with the actions, rewards and done flags: a latent dataset in the format of the encode stage;
2. trains a fresh M on the latents of all rounds so far;
3. trains a fresh C by CMA-ES in that M's dream.
Round r keeps its data, M and C under `<workdir>/round_<r>/` (`Workdir.round`); V and the
initial latents are the ones of round 0. Every step is skipped when complete, so a killed round
resumes.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models.latent_env import play_latent_episodes
from wm_jax.world_models.stages import controller, mdn
from wm_jax.world_models.workdir import Workdir, clear_if_stale, latents_fingerprint


def collect_with_controller(config: ml_collections.ConfigDict, workdir: str,
                            round_index: int) -> dict[str, int]:
  """Round `round_index`'s latent dataset, from the previous round's C (+ epsilon exploration).
  Returns {'episodes': how many it holds}."""
  path = Workdir(workdir).latents(round_index)
  meta = latents_fingerprint(config, round_index)
  stored = episodes_lib.read_metadata(path) if episodes_lib.is_complete(path) else None
  if stored == meta:
    return episodes_lib.summary(path)
  world = controller.load_world(config, workdir, round_index - 1)  # The inputs first.
  theta = controller.restore_controller(config, workdir, world.template, round_index - 1)
  clear_if_stale(stored, meta, f'The latent dataset in {path}', [path])
  space = world.real.action_space(world.real_params)
  epsilon = config.iterative.epsilon

  def explore(params, observation, key):
    key_coin, key_action = jax.random.split(key)
    return jnp.where(jax.random.uniform(key_coin) < epsilon, space.sample(key_action),
                     world.policy(params, observation, key))

  keys = jax.random.split(jax.random.fold_in(jax.random.key(config.seed), 100 + round_index),
                          config.iterative.num_episodes)
  _, episodes = play_latent_episodes(world.real, world.real_params, explore, theta, keys,
                                     config.env.max_steps)
  z = config.vae.model.z_size
  action = episodes[0]['actions'][0]
  spec = {'mu': ((z,), np.float32), 'logvar': ((z,), np.float32),
          'actions': (action.shape, action.dtype), 'rewards': ((), np.float32),
          'dones': ((), np.bool_), 'terminals': ((), np.bool_)}
  episodes_lib.write_episodes(path, spec, episodes, meta)
  lengths = np.array([len(episode['mu']) for episode in episodes])
  print(f'round {round_index}: collected {len(lengths)} episodes with C, mean length '
        f'{lengths.mean():.1f} (+- {lengths.std():.1f}), {int(lengths.sum())} steps', flush=True)
  return episodes_lib.summary(path)


@holds_workdir_lock
def run_rounds(config: ml_collections.ConfigDict, workdir: str) -> dict[str, dict]:
  """Rounds 1 .. iterative.rounds - 1 (round 0 is the collect .. controller stages). Returns
  {'round_<r>': {'collect', 'mdn', 'controller'}: each step's results}."""
  return {f'round_{r}': {'collect': collect_with_controller(config, workdir, r),
                         'mdn': mdn.train_and_evaluate(config, workdir, r),
                         'controller': controller.train_and_evaluate(config, workdir, r)}
          for r in range(1, config.iterative.rounds)}
