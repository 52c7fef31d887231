"""VideoGPT's prior over a frozen VQ-VAE: the trained VQ-VAE run it models (`FrozenVQVAE`),
how a batch of clips conditions the prior and its teacher-forced loss (`Prior`), and the clip
batches shaped as the VQ-VAE was trained."""

from __future__ import annotations

import json
import os

import grain
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp

from wm_jax.common import config as config_lib
from wm_jax.common import training
from wm_jax.data import video as video_lib
from wm_jax.videogpt import vqvae as vqvae_lib
from wm_jax.videogpt.models.video_gpt import VideoGPT
from wm_jax.videogpt.models.video_vqvae import VideoVQVAE


class FrozenVQVAE:
  """A finished VQ-VAE run: its config, module, variables and checkpoint step."""

  def __init__(self, workdir: str):
    directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    manager = ocp.CheckpointManager(directory) if os.path.isdir(directory) else None
    if manager is None or manager.latest_step() is None:
      raise FileNotFoundError(f'No trained VQ-VAE in vqvae.workdir={workdir!r} (no checkpoints in '
                              f'{directory}). Train one first: python -m experiments.train_vqvae.')
    self.step = manager.latest_step()
    check_finished(workdir, self.step)
    metadata = manager.metadata().custom_metadata
    self.config = ml_collections.ConfigDict(config_lib.unflatten(metadata))
    self.model = vqvae_lib.make_model(self.config)
    abstract = jax.eval_shape(lambda: vqvae_lib.create_train_state(self.config,
                                                                   jax.random.PRNGKey(0)))
    state = manager.restore(self.step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(training.abstract(abstract))))['state']
    self.variables = {'params': state.params, 'batch_stats': state.batch_stats,
                      'codebook': state.codebook}
    self.video_shape = vqvae_lib.video_shape(self.config)
    self.latent_shape = tuple(n // d for n, d in zip(self.video_shape[:3],
                                                     self.config.model.downsample))
    self.num_codes = self.config.model.num_codes
    self.fingerprint = {**vqvae_lib.vqvae_fingerprint(self.config), 'step': self.step}


def check_finished(workdir: str, step: int) -> None:
  """Raises a ValueError unless the VQ-VAE run in `workdir`, whose latest checkpoint is `step`,
  finished: vqvae.train_and_evaluate writes results.json of the final step last."""
  path = os.path.join(workdir, 'results.json')
  finished = None
  if os.path.exists(path):
    with open(path) as f:
      finished = json.load(f)['step']
  if finished != step:
    why = (f'its results.json is from step {finished}' if finished is not None else
           'it has no results.json')
    raise ValueError(
        f'The VQ-VAE in vqvae.workdir={workdir!r} stopped at step {step} (its latest checkpoint; '
        f'{why}), before the end of its train.num_steps. Finish it: python -m '
        f'experiments.train_vqvae --workdir={workdir} with its --config; or, to stop it at step '
        f'{step}, with --config.train.num_steps={step} as well, which only evaluates it and '
        'writes results.json.')


def codebook_vectors(vqvae_variables) -> jax.Array:
  """The VQ-VAE's code vectors [num_codes, E]: the prior's (frozen) input embeddings."""
  return vqvae_variables['codebook']['codebook']['codes']


def encode(vqvae: VideoVQVAE, vqvae_variables, videos: jax.Array) -> jax.Array:
  """uint8 clips [B, T, H, W, C] -> codes [B, T', H', W'] (inference, no codebook update)."""
  return vqvae.apply(vqvae_variables, video_lib.to_model_range(videos),
                     method=VideoVQVAE.encode).codes


def action_condition(actions: jax.Array, action_dim: int, frames_per_step: int) -> jax.Array:
  """Per-frame actions [B, T] (integers, one-hot to action_dim) or [B, T, action_dim] (vectors)
  -> one conditioning vector per latent step [B, T / frames_per_step, frames_per_step *
  action_dim]: the actions that led to the step's frames (action t-1 leads to frame t; frame 0's
  is zero), concatenated."""
  if jnp.issubdtype(actions.dtype, jnp.integer):
    if actions.ndim != 2:
      raise ValueError(f'Integer actions must be [B, T], got shape {actions.shape}.')
    vectors = jax.nn.one_hot(actions, action_dim)
  else:
    vectors = actions.reshape(*actions.shape[:2], -1).astype(jnp.float32)
    if vectors.shape[-1] != action_dim:
      raise ValueError(f'Action vectors have size {vectors.shape[-1]}; data.action_dim is '
                       f'{action_dim}.')
  batch, frames = vectors.shape[:2]
  vectors = jnp.concatenate([jnp.zeros_like(vectors[:, :1]), vectors[:, :-1]], axis=1)
  return vectors.reshape(batch, frames // frames_per_step, frames_per_step * action_dim)


class Prior:
  """The prior of a config over a frozen VQ-VAE: the module and how a batch conditions it."""

  def __init__(self, config: ml_collections.ConfigDict, vqvae: FrozenVQVAE):
    m = config.model
    self.vqvae = vqvae
    self.frames_per_step = vqvae.video_shape[0] // vqvae.latent_shape[0]
    self.cond_frames, self.action_dim = m.cond_frames, config.data.action_dim
    if not 0 <= self.cond_frames <= vqvae.video_shape[0]:
      raise ValueError(f'model.cond_frames={self.cond_frames} must lie in [0, '
                       f'{vqvae.video_shape[0]}] (the clip length).')
    self.model = VideoGPT(latent_shape=vqvae.latent_shape, num_codes=vqvae.num_codes,
                          condition_dim=self.frames_per_step * self.action_dim, **m)

  def conditions(self, batch: dict[str, jax.Array]) -> tuple[jax.Array | None, jax.Array | None]:
    """(c, frames) of a batch {'video' uint8, 'actions'?}: the action vectors per latent step
    and the first `model.cond_frames` frames in [-0.5, 0.5]."""
    c = frames = None
    if self.action_dim:
      if 'actions' not in batch:
        raise ValueError('data.action_dim > 0, but the clips carry no actions: use a source with '
                         'actions (world_models, bair_robot_pushing_small) or data.action_dim=0.')
      c = action_condition(batch['actions'], self.action_dim, self.frames_per_step)
    if self.cond_frames:
      frames = video_lib.to_model_range(batch['video'][:, :self.cond_frames])
    return c, frames

  def init(self, rng: jax.Array, batch: dict[str, jax.Array]):
    """The prior's parameters, from a batch's shapes."""
    codes = jnp.zeros((1, *self.vqvae.latent_shape), jnp.int32)
    embeddings = codebook_vectors(self.vqvae.variables)[codes]
    c, frames = self.conditions(jax.tree.map(lambda x: x[:1], batch))
    return self.model.init(rng, embeddings, c, frames)['params']

  def loss(self, params, vqvae_variables, batch, train: bool, dropout_rng=None):
    """(mean cross-entropy in nats per code, metrics) of a batch of clips."""
    codes = encode(self.vqvae.model, vqvae_variables, batch['video'])
    embeddings = codebook_vectors(vqvae_variables)[codes]
    c, frames = self.conditions(batch)
    logits = self.model.apply({'params': params}, embeddings, c, frames, train=train,
                              rngs={'dropout': dropout_rng} if train else None)
    losses = optax.softmax_cross_entropy_with_integer_labels(logits, codes)
    accuracy = jnp.mean(jnp.argmax(logits, -1) == codes)
    loss = jnp.mean(losses)
    return loss, {'loss': loss, 'bits_per_dim': loss / jnp.log(2.0), 'accuracy': accuracy}


def clip_batches(config: ml_collections.ConfigDict, vqvae: FrozenVQVAE, split: str,
                 batch_size: int, shard: grain.sharding.ShardOptions = grain.sharding.NoSharding()):
  """Batches of clips shaped as the VQ-VAE was trained: endless and random for 'train', the
  first windows in order for 'test'; `shard` as in `wm_jax.data.video.clip_batches`."""
  source, video_key, action_key = video_lib.open_videos(config.data.name, split,
                                                        config.data.data_dir)
  frames, resolution = vqvae.video_shape[:2]
  return video_lib.clip_batches(source, video_key, action_key, num_frames=frames,
                                resolution=resolution, batch_size=batch_size, seed=config.seed,
                                train=split == 'train', shard=shard)


def first_batches(batches, count: int,
                  where: str = 'The test split') -> list[dict[str, np.ndarray]]:
  """The first `count` of `batches`; a ValueError naming the keys that ask for them (and
  `where` they come from) if there are fewer."""
  out = [b for b, _ in zip(batches, range(count))]
  if len(out) < count:
    raise ValueError(f'{where} has {len(out)} batches of eval.batch_size clips; {count} are '
                     'needed (eval.num_clips, samples.num_videos, and predict.num_clips with '
                     'predict.context_frames > 0, each over eval.batch_size).')
  return out


def check_batch(batch, vqvae: FrozenVQVAE) -> None:
  if batch['video'].shape[1:] != vqvae.video_shape:
    raise ValueError(f'Data clips have shape {batch["video"].shape[1:]}; the VQ-VAE in '
                     f'vqvae.workdir was trained on {vqvae.video_shape} (its data.num_frames, '
                     'data.resolution, data.channels).')


