"""The encode stage: every rollout episode through the trained V.

Stores per episode the series of mu and log-variance (M resamples z from them every epoch) with
the actions, rewards and done flags (`data/latents/`), plus `data/initial_latents.npz`: the
first-frame mu and log-variance of every episode, from which the dream starts.
"""

from __future__ import annotations

import os
from typing import Callable, Iterator

import jax
import ml_collections
import numpy as np
import tqdm

from wm_jax.common.config import check_same
from wm_jax.common.workdir_lock import holds_workdir_lock
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models.models.conv_vae import ConvVAE
from wm_jax.world_models.stages.vae import restore_params
from wm_jax.world_models.workdir import Workdir, fingerprint
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
  """Encodes the rollouts with the trained V unless done (with this config). Returns
  {'episodes': how many the latent dataset holds}."""
  paths = Workdir(workdir)
  meta = fingerprint(config, 'encode')
  if episodes_lib.is_complete(paths.latents()) and os.path.exists(paths.initial_latents):
    check_same(episodes_lib.read_metadata(paths.latents()), meta,
               f'The latent dataset in {paths.latents()}')
    return episodes_lib.summary(paths.latents())
  rollouts = episodes_lib.open_episodes(paths.rollouts, 'rollout')
  encode_frames = make_encoder(config, restore_params(config, workdir))
  first_mu, first_logvar = [], []

  def keep_first_frames(episodes):
    for episode in episodes:
      first_mu.append(episode['mu'][0])
      first_logvar.append(episode['logvar'][0])
      yield episode

  sample, z = rollouts[0], config.vae.model.z_size
  spec = {'mu': ((z,), np.float32), 'logvar': ((z,), np.float32),
          **{k: (sample[k].shape[1:], sample[k].dtype) for k in rollout_fields(sample)}}
  episodes = latent_episodes(rollouts, encode_frames, config.encode.batch_size)
  episodes_lib.write_episodes(paths.latents(), spec, keep_first_frames(episodes), meta)
  temporary = paths.initial_latents + '.tmp.npz'
  np.savez(temporary, mu=np.stack(first_mu), logvar=np.stack(first_logvar))
  os.replace(temporary, paths.initial_latents)
  return episodes_lib.summary(paths.latents())
