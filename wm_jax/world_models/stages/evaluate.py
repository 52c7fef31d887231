"""The evaluate stage: C (of the last round) scored in the real environment and the dream, a
random baseline, pictures.

Writes to the workdir:
- `results.json`: mean, std, min and max return over `evaluate.num_episodes` episodes of C in
  the real environment (pixels through V and M), of C in the dream (at `dream.temperature`),
  and of a uniformly random policy in the real environment; plus the temperature and episode cap;
  and `m_on_real_episodes`: M's done and reward heads run over C's real episodes (the deaths
  its done head catches, what its reward head pays), where the dream's rating of C goes wrong.
- `curves.png`: V's loss, M's loss, and C's population, dream and real returns over training
  (every round of the iterative procedure).
- `dream_vs_real.gif`: a dream episode decoded by V's decoder (left) beside a real episode
  (right), both driven by C.
"""

from __future__ import annotations

import json
import os
import warnings
from typing import Any

import jax
import ml_collections
import numpy as np
from matplotlib.figure import Figure

from wm_jax.common import images, training
from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.world_models.cmaes import rollout
from wm_jax.world_models.latent_env import play_latent_episodes
from wm_jax.world_models.models.conv_vae import ConvVAE
from wm_jax.world_models.stages import mdn
from wm_jax.world_models.stages.controller import load_world, make_scorer, restore_controller
from wm_jax.world_models.workdir import Workdir, fingerprint


def summarize(returns: jax.Array) -> dict[str, float]:
  returns = np.asarray(returns, np.float64)
  return {'mean': float(returns.mean()), 'std': float(returns.std()),
          'min': float(returns.min()), 'max': float(returns.max()), 'episodes': len(returns)}


def score(config: ml_collections.ConfigDict, world, theta, keys) -> dict[str, Any]:
  """C's returns in the real environment and the dream, and a uniformly random policy's, over
  `evaluate.num_episodes` episodes each, with the three `keys`; and how M reads C's real
  episodes (`m_on_real_episodes`)."""
  max_steps, episodes = config.env.max_steps, config.evaluate.num_episodes
  pixel_env = world.real.env
  pixel_params = world.real_params.env_params.replace(max_steps_in_episode=max_steps)

  def scores(env, env_params, policy, key):
    return summarize(make_scorer(env, env_params, policy, max_steps)(
        theta, jax.random.split(key, episodes)))

  key_real, key_dream, key_random = keys
  real_returns, real_episodes = play_latent_episodes(
      world.real, world.real_params, world.policy, theta, jax.random.split(key_real, episodes),
      max_steps)
  return {'real': summarize(real_returns),
          'dream': scores(world.dream, world.dream_params, world.policy, key_dream),
          'random_policy': scores(pixel_env, pixel_params,
                                  random_policy(pixel_env.action_space(pixel_params)),
                                  key_random),
          'm_on_real_episodes': m_on_episodes(world, real_episodes)}


def m_on_episodes(world, episodes: list[dict[str, np.ndarray]]) -> dict[str, Any]:
  """M's heads run over C's real episodes (`play_latent_episodes`'), teacher-forced with z = mu:
  where its done head fires (logit > 0: `mdn.done_detection`) and what its reward head pays
  (`mdn.reward_prediction`), the heads M has. What the dream gets wrong about C, measured on C's
  own episodes (M learned from other policies' data)."""
  data, lengths = mdn.pack_sequences(episodes, world.real.action_features)
  model, params = world.real.mdn, world.dream_params.mdn_params
  outputs = mdn.head_outputs(model, params, data, lengths)
  return {'episodes': len(lengths), 'steps': int(lengths.sum()),
          **(mdn.done_detection(outputs['done_logits'], data, lengths)
             if model.predict_done else {}),
          **(mdn.reward_prediction(outputs['rewards'], data, lengths)
             if model.predict_reward else {})}


def random_policy(space):
  """Uniformly random actions of `space`, as a policy (params, observation, key) -> action."""
  return lambda params, observation, key: space.sample(key)


@holds_workdir_lock
def evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Scores the trained C and writes curves.png, dream_vs_real.gif and, last, results.json;
  returns the results (skips, returning the stored ones, if done with this config). A read-only
  workdir is scored without writing."""
  paths = Workdir(workdir)
  last_round = config.iterative.rounds - 1
  meta = fingerprint(config, 'evaluate', last_round)
  if os.path.exists(paths.results):
    with open(paths.results) as f:
      results = json.load(f)
    if results['config'] == meta:  # Already evaluated with this configuration.
      return results
  world = load_world(config, workdir, last_round)
  theta = restore_controller(config, workdir, world.template, last_round)
  key_real, key_dream, key_random, key_gif = jax.random.split(
      jax.random.fold_in(jax.random.key(config.seed), 4), 4)
  results = {'env': config.env.name,
             **score(config, world, theta, (key_real, key_dream, key_random)),
             'round': last_round, 'temperature': config.dream.temperature,
             'max_steps': config.env.max_steps, 'config': meta}
  print('results:', json.dumps({k: results[k] for k in ('real', 'dream', 'random_policy',
                                                         'm_on_real_episodes')}))
  if not os.access(paths.root, os.W_OK):
    warnings.warn(f'{paths.root} is read-only: the results are not written.')
    return results
  plot_curves(paths, results, config.iterative.rounds, config.controller.num_generations)
  write_dream_vs_real_gif(world, theta, key_gif, config.evaluate.gif_steps,
                          os.path.join(paths.root, 'dream_vs_real.gif'))
  # Last: a results.json of this config means the pictures beside it are done too.
  with open(paths.results + '.tmp', 'w') as f:
    json.dump(results, f, indent=2)
  os.replace(paths.results + '.tmp', paths.results)
  return results


def plot_curves(paths: Workdir, results: dict[str, Any], rounds: int, generations: int) -> None:
  """V's loss, M's loss and C's returns over training (rounds of the iterative procedure side by
  side), from the stages' metrics.jsonl, as curves.png."""
  # A Figure without pyplot: no backend is chosen for the caller (a notebook keeps its own).
  fig = Figure(figsize=(15, 4))
  ax_v, ax_m, ax_c = fig.subplots(1, 3)
  vae = training.read_metrics(os.path.join(paths.vae, 'metrics.jsonl'))
  for name, label in (('vae/loss', 'loss (SE + floored KL)'), ('vae/kl', 'KL')):
    if name in vae:
      ax_v.plot(*vae[name], label=label)
  ax_v.set(title='V', xlabel='step', yscale='log')
  for r in range(rounds):
    suffix = f' (round {r})' if rounds > 1 else ''
    m = training.read_metrics(os.path.join(paths.mdn(r), 'metrics.jsonl'))
    if 'mdn/nll' in m:
      ax_m.plot(*m['mdn/nll'], label='NLL per dimension' + suffix)
    c = training.read_metrics(os.path.join(paths.controller(r), 'metrics.jsonl'))
    offset = r * generations  # Round r's generations follow round r - 1's on the x axis.
    if 'population/mean_return' in c:
      steps, values = c['population/mean_return']
      ax_c.plot(steps + offset, values, color='C0', alpha=0.5,
                label='population mean (dream)' if r == 0 else None)
    if 'mean_real_return' in c:
      (steps, dream), (_, real), (_, std) = (c['mean_dream_return'], c['mean_real_return'],
                                            c['mean_real_return_std'])
      ax_c.plot(steps + offset, dream, 'o-', color='C1', label='C in the dream' if r == 0 else None)
      ax_c.plot(steps + offset, real, 'o-', color='C2', label='C in the real env' if r == 0 else None)
      ax_c.fill_between(steps + offset, real - std, real + std, color='C2', alpha=0.2)
  ax_m.set(title='M', xlabel='epoch')
  ax_c.axhline(results['random_policy']['mean'], color='gray', ls='--', label='random policy')
  ax_c.set(title='C (CMA-ES in the dream)', xlabel='generation', ylabel='return')
  for ax in (ax_v, ax_m, ax_c):
    ax.legend(fontsize=8)
  fig.tight_layout()
  fig.savefig(os.path.join(paths.root, 'curves.png'), dpi=80)


def dream_frames(world, theta, key: jax.Array, num_steps: int) -> tuple[np.ndarray, int]:
  """A dream episode of C (`theta`; None: uniformly random actions) decoded by V: uint8 frames
  [num_steps, 64, 64, 3] and the episode's length (frames after it are past its end)."""
  params = world.dream_params.replace(max_steps_in_episode=num_steps)
  policy = world.policy if theta is not None else random_policy(world.dream.action_space())
  _, z, alive = jax.jit(lambda k: rollout(world.dream, params, policy, theta, k, num_steps,
                                          lambda s, *_: s.z))(key)
  frames = jax.jit(lambda z: world.real.vae.apply({'params': world.vae_params}, z,
                                                  method=ConvVAE.decode))(z)
  return images.to_uint8(frames), int(np.sum(alive))


def real_frames(world, theta, key: jax.Array, num_steps: int) -> tuple[np.ndarray, int]:
  """A real episode of C (`theta`; None: uniformly random actions), as the environment renders
  it: uint8 frames [num_steps, 64, 64, 3] and the episode's length."""
  env_params = world.real_params.env_params
  policy = (world.policy if theta is not None
            else random_policy(world.real.env.action_space(env_params)))
  _, env_states, alive = jax.jit(lambda k: rollout(
      world.real, world.real_params, policy, theta, k, num_steps, lambda s, *_: s.env_state))(key)
  frames = jax.jit(jax.vmap(lambda s: world.real.env.render(s, env_params)))(env_states)
  return np.asarray(frames), int(np.sum(alive))


def write_dream_vs_real_gif(world, theta, key: jax.Array, num_steps: int, path: str) -> None:
  """C's dream episode decoded by V (left) beside its real episode (right); a finished episode
  holds its last frame."""
  key_dream, key_real = jax.random.split(key)
  (dream, dream_length), (real, real_length) = (dream_frames(world, theta, key_dream, num_steps),
                                                real_frames(world, theta, key_real, num_steps))
  length = max(dream_length, real_length)
  images.save_gif(path, [np.concatenate([d, r], axis=1) for d, r in zip(
      hold_last(dream, dream_length)[:length], hold_last(real, real_length)[:length])], fps=25)


def hold_last(frames: np.ndarray, length: int) -> np.ndarray:
  """`frames` [T, ...] with those after the first `length` replaced by frame `length - 1`."""
  return np.concatenate([frames[:length], np.repeat(frames[length - 1:length],
                                                    len(frames) - length, axis=0)])
