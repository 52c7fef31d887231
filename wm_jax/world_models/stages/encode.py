"""The encode stage: every rollout episode through the trained V.

Stores per episode the series of mu and log-variance (M resamples z from them every epoch) with
the actions, rewards and done flags (`data/latents/`), plus `data/initial_latents.npz`: the
first-frame mu and log-variance of every episode, from which the dream starts.
"""

from __future__ import annotations

import contextlib
import os
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np
from tqdm import auto as tqdm

from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models.models.conv_vae import ConvVAE
from wm_jax.world_models.stages.vae import restore_params
from wm_jax.world_models.workdir import (Workdir, clear_if_stale, latents_fingerprint,
                                         open_rollouts)
from wm_jax.world_models.world import vae_model


def rollout_fields(episode) -> list[str]:
  """The per-step fields of a rollout episode that the latent dataset carries over."""
  return [k for k in episode if k != 'frames']


def make_encoder(config: ml_collections.ConfigDict, params
                 ) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
  """frames [N, 64, 64, 3] -> (mu, logvar) [N, z], in jitted calls of `encode.batch_size`
  frames (the last one padded), so that the encoder compiles for one shape."""
  model, chunk = vae_model(config), config.encode.batch_size
  encode = jax.jit(lambda frames: model.apply({'params': params}, frames, method=ConvVAE.encode))

  def encode_frames(frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    padded = np.concatenate([frames, np.zeros((-len(frames) % chunk, *frames.shape[1:]),
                                              frames.dtype)])
    mu, logvar = zip(*(encode(padded[i:i + chunk]) for i in range(0, len(padded), chunk)))
    return np.concatenate(mu)[:len(frames)], np.concatenate(logvar)[:len(frames)]
  return encode_frames


def latent_episodes(rollouts, encode_frames, min_frames: int) -> Iterator[dict[str, np.ndarray]]:
  """The rollouts' latent episodes, encoded in groups of at least `min_frames` frames, so that
  short episodes share calls."""
  group = []
  for i in tqdm.trange(len(rollouts), desc='encode', unit='episode'):
    group.append(rollouts[i])
    if sum(len(e['frames']) for e in group) < min_frames and i + 1 < len(rollouts):
      continue
    mu, logvar = encode_frames(np.concatenate([e['frames'] for e in group]))
    splits = np.cumsum([len(e['frames']) for e in group])[:-1]
    for episode, mu_e, logvar_e in zip(group, np.split(mu, splits), np.split(logvar, splits)):
      yield {'mu': mu_e, 'logvar': logvar_e, **{k: episode[k] for k in rollout_fields(episode)}}
    group = []


@holds_workdir_lock
def encode(config: ml_collections.ConfigDict, workdir: str) -> dict[str, int]:
  """Encodes the rollouts with the trained V unless done (with this config), then writes the
  initial latents from the latent dataset unless present: the two are made together (a stale
  latent dataset takes its initial latents with it). Returns {'episodes': how many the latent
  dataset holds}."""
  paths = Workdir(workdir)
  meta = latents_fingerprint(config)
  stored = (episodes_lib.read_metadata(paths.latents())
            if episodes_lib.is_complete(paths.latents()) else None)
  if stored != meta:
    # The inputs first, so that a stage that cannot run removes nothing.
    rollouts = open_rollouts(config, workdir)
    encode_frames = make_encoder(config, restore_params(config, workdir))
    clear_if_stale(stored, meta, f'The latent dataset in {paths.latents()}',
                   [paths.latents(), paths.initial_latents])
    with contextlib.suppress(FileNotFoundError):
      os.remove(paths.initial_latents)  # From another encoding.
    sample, z = rollouts[0], config.vae.model.z_size
    spec = {'mu': ((z,), np.float32), 'logvar': ((z,), np.float32),
            **{k: (sample[k].shape[1:], sample[k].dtype) for k in rollout_fields(sample)}}
    episodes_lib.write_episodes(paths.latents(), spec,
                                latent_episodes(rollouts, encode_frames, config.encode.batch_size),
                                meta)
  if not os.path.exists(paths.initial_latents):
    write_initial_latents(paths)
  return episodes_lib.summary(paths.latents())


def write_initial_latents(paths: Workdir) -> None:
  """`initial_latents.npz`: 'mu' and 'logvar' [episodes, z] of every latent episode's first
  frame, where dreams start."""
  latents = episodes_lib.open_episodes(paths.latents(), 'latent')
  first = [(episode['mu'][0], episode['logvar'][0])
           for episode in (latents[i] for i in range(len(latents)))]
  temporary = paths.initial_latents + '.tmp.npz'
  mu, logvar = map(np.stack, zip(*first))
  np.savez(temporary, mu=mu, logvar=logvar)
  os.replace(temporary, paths.initial_latents)
