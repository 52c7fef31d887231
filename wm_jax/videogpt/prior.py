"""Training VideoGPT's prior (stage 2) over a trained VQ-VAE's codes, and scoring it.

`train_and_evaluate(config, workdir)`:
- loads the VQ-VAE run in `vqvae.workdir` (its configuration from its checkpoints' metadata, its
  latest checkpoint) and keeps it frozen;
- trains with one jitted `train_step(state, vqvae_variables, batch)`: the uint8 clips are
  encoded to codes on device, and the prior is fitted by teacher-forced cross-entropy over all
  L = T'H'W' codes (Adam, cosine decay to 0, gradient clipping), the batch placed with a
  NamedSharding over the mesh's 'data' axis;
- every `train.eval_every` steps: bits/dim, the test cross-entropy in bits per latent code, on
  the first `eval.num_clips` test clips;
- at the end: `samples.num_videos` sampled videos (samples.gif, samples.png; conditioned on test
  clips when the prior is conditional or the VQ-VAE decodes relative to a reference frame),
  their FVD against test clips when `eval.fvd_trials` > 0, and, with `predict.context_frames`
  > 0, future frames predicted from context frames and the clip's actions (greedy, one draw, or
  the pixel mean of `predict.num_samples` draws), scored by PSNR/SSIM per horizon against the
  truth and against repeating the last context frame (predictions.png).
Orbax checkpoints hold the TrainState and the grain iterator's position, so a killed run resumes
and ends where an uninterrupted run would. results.json holds the final scores.
"""

from __future__ import annotations

import functools
import json
import math
import os
import time
from typing import Any

import chex
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import orbax.checkpoint as ocp
import tqdm
from flax.training import train_state

from wm_jax.common.config import fingerprint
from wm_jax.data import video as video_lib
from wm_jax.metrics import image_quality
from wm_jax.videogpt.models.frame_encoder import FrameEncoder
from wm_jax.videogpt.models.video_gpt import VideoGPT, sample_codes
from wm_jax.videogpt.models.video_vqvae import VideoVQVAE
from wm_jax.common import images, training
from wm_jax.videogpt import vqvae as vqvae_lib

# Keys that may change between a run and its resumption without changing what it trains.
RESUMABLE_KEYS = ('train.log_every', 'train.eval_every', 'train.checkpoint_every',
                  'model.attention_impl')  # Both implementations give the same numbers.


class TrainState(train_state.TrainState):
  rng: jax.Array  # raw uint32[2] key; step t drops out with fold_in(rng, t)


class FrozenVQVAE:
  """A trained VQ-VAE run: its config, module, variables and checkpoint step."""

  def __init__(self, workdir: str):
    directory = os.path.join(os.path.abspath(workdir), 'checkpoints')
    manager = ocp.CheckpointManager(directory) if os.path.isdir(directory) else None
    if manager is None or manager.latest_step() is None:
      raise FileNotFoundError(f'No trained VQ-VAE in vqvae.workdir={workdir!r} (no checkpoints in '
                              f'{directory}). Train one first: python -m experiments.train_vqvae.')
    self.config = ml_collections.ConfigDict(_unflatten(manager.metadata().custom_metadata))
    self.step = manager.latest_step()
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


def _unflatten(flat: dict[str, Any]) -> dict[str, Any]:
  tree: dict[str, Any] = {}
  for key, value in flat.items():
    *parents, leaf = key.split('.')
    node = tree
    for parent in parents:
      node = node.setdefault(parent, {})
    node[leaf] = value
  return tree


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


def make_model(config: ml_collections.ConfigDict, latent_shape, num_codes: int,
               condition_dim: int = 0) -> VideoGPT:
  """The VideoGPT module of `config.model` over a latent grid of `num_codes` codes (with a
  frame encoder when model.cond_frames > 0)."""
  m = config.model
  encoder = FrameEncoder(tuple(m.resnet_blocks), tuple(m.resnet_widths),
                         m.resnet_stem) if m.cond_frames else None
  return VideoGPT(tuple(latent_shape), num_codes, width=m.width, num_heads=m.num_heads,
                  num_layers=m.num_layers, mlp_ratio=m.mlp_ratio, dropout=m.dropout,
                  attention_dropout=m.attention_dropout, attention=m.attention,
                  attention_impl=m.attention_impl, block_size=m.block_size,
                  num_local_blocks=m.num_local_blocks, position_embedding=m.position_embedding,
                  condition_dim=condition_dim, frame_encoder=encoder)


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
    self.model = make_model(config, vqvae.latent_shape, vqvae.num_codes,
                            self.frames_per_step * self.action_dim)

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


def create_train_state(config: ml_collections.ConfigDict, prior: Prior, batch,
                       rng: jax.Array) -> TrainState:
  init_rng, state_rng = jax.random.split(rng)
  t = config.train
  schedule = optax.cosine_decay_schedule(t.learning_rate, t.num_steps)
  tx = optax.chain(optax.clip_by_global_norm(t.grad_clip) if t.grad_clip else optax.identity(),
                   optax.adam(schedule))
  return TrainState.create(apply_fn=prior.model.apply, params=prior.init(init_rng, batch), tx=tx,
                           rng=state_rng)


def train_step(state: TrainState, vqvae_variables, batch: dict[str, jax.Array],
               prior: Prior) -> tuple[TrainState, dict[str, jax.Array]]:
  """One Adam step of the prior on a batch {'video': uint8 [B, T, H, W, C], 'actions'?}."""
  dropout_rng = jax.random.fold_in(state.rng, state.step)
  grad_fn = jax.grad(prior.loss, has_aux=True)
  grads, metrics = grad_fn(state.params, vqvae_variables, batch, True, dropout_rng)
  metrics['grad_norm'] = optax.tree.norm(grads)
  return state.apply_gradients(grads=grads), metrics


def jit_train_step(prior: Prior, mesh: jax.sharding.Mesh, batch_size: int):
  """`train_step` jitted once: state and VQ-VAE replicated, the batch sharded on 'data'."""
  replicated, batch = training.replicated(mesh), training.data_sharding(mesh, batch_size)
  chex.clear_trace_counter()

  @chex.assert_max_traces(n=1)
  def step(state, vqvae_variables, batch):
    return train_step(state, vqvae_variables, batch, prior)

  return jax.jit(step, in_shardings=(replicated, replicated, batch),
                 out_shardings=(replicated, replicated), donate_argnums=0)


@functools.partial(jax.jit, static_argnums=0)
def _eval_loss(prior: Prior, params, vqvae_variables, batch) -> jax.Array:
  return prior.loss(params, vqvae_variables, batch, False)[0]


def bits_per_dim(prior: Prior, params, batches) -> float:
  """Mean cross-entropy over all codes of the clips in `batches`, in bits per code."""
  if not batches:
    raise ValueError('No evaluation clips: the test split is empty or shorter than one batch.')
  losses = [_eval_loss(prior, params, prior.vqvae.variables, b) for b in batches]
  return float(np.mean(jax.device_get(losses)) / np.log(2.0))


@functools.partial(jax.jit, static_argnames=('prior', 'prefix_steps', 'temperature', 'top_k'))
def generate(prior: Prior, params, vqvae_variables, batch: dict[str, jax.Array], key: jax.Array,
             prefix_steps: int = 0, temperature: float = 1.0, top_k: int = 0) -> jax.Array:
  """Videos [B, T, H, W, C] in [-0.5, 0.5] sampled by the prior (conditioned on the batch's
  actions and frames where it is conditional); decoded by the VQ-VAE.

  With `prefix_steps` > 0 the first prefix_steps latent steps are the codes of the context (the
  first prefix_steps * frames_per_step frames) and only the rest is drawn. The encoder is not
  causal in time (its convolutions and attention span neighbouring frames), so the context is
  encoded with the frames after it replaced by its last frame: no code reads a future frame.
  A VQ-VAE with `reference_frame` r decodes relative to the batch's frame r (in the context:
  `check_settings`).
  """
  vqvae = prior.vqvae.model
  c, frames = prior.conditions(batch)
  videos = batch['video']
  batch_size = videos.shape[0]
  prefix = None
  if prefix_steps:
    context = prefix_steps * prior.frames_per_step
    held = jnp.repeat(videos[:, context - 1:context], videos.shape[1] - context, axis=1)
    codes = encode(vqvae, vqvae_variables, jnp.concatenate([videos[:, :context], held], axis=1))
    prefix = codes[:, :prefix_steps].reshape(batch_size, -1)
  codes = sample_codes(prior.model, params, codebook_vectors(vqvae_variables), key, batch_size,
                       c, frames, prefix, temperature, top_k)
  reference = None
  if vqvae.reference_frame is not None:
    reference = video_lib.to_model_range(videos[:, vqvae.reference_frame])
  return jnp.clip(vqvae.apply(vqvae_variables, codes, reference,
                              method=VideoVQVAE.decode_codes), -0.5, 0.5)


def sample_videos(prior: Prior, params, batches, key: jax.Array, prefix_steps: int,
                  temperature: float, top_k: int, num_samples: int = 1) -> np.ndarray:
  """uint8 videos [N, T, H, W, C] generated for each batch of `batches` (the conditioning).

  With `num_samples` > 1 each video is the pixel mean of that many draws (draw k of batch i
  with fold_in(key, k * len(batches) + i)): the Monte-Carlo estimate of the prior's expected
  video, the prediction with the least expected squared error under the prior.
  """
  videos = []
  for i, batch in enumerate(batches):
    total = 0.0  # A running sum: one draw on the device at a time.
    for k in range(num_samples):
      total = total + generate(prior, params, prior.vqvae.variables, batch,
                               jax.random.fold_in(key, k * len(batches) + i), prefix_steps,
                               temperature, top_k)
    videos.append(total / num_samples)
  return np.round((np.concatenate(jax.device_get(videos)) + 0.5) * 255).astype(np.uint8)


def prediction_scores(truth: np.ndarray, predicted: np.ndarray, reconstructed: np.ndarray,
                      context_frames: int, horizons) -> dict[str, dict[str, float]]:
  """Per horizon h (frame context_frames + h - 1), mean PSNR/SSIM over clips of the predicted
  frames, of the last context frame repeated (the baseline) and of the VQ-VAE's
  reconstruction of the true clip (the ceiling), all against the true frames (uint8
  [N, T, H, W, C])."""
  to_range = lambda v: jnp.asarray(v, jnp.float32) / 255.0 - 0.5
  copy = np.repeat(truth[:, context_frames - 1:context_frames], truth.shape[1], axis=1)
  scores = {}
  for name, frames in (('prediction', predicted), ('copy_last', copy),
                       ('reconstruction', reconstructed)):
    psnr = np.asarray(image_quality.psnr(to_range(truth), to_range(frames), per_frame=True))
    ssim = np.asarray(image_quality.ssim(to_range(truth), to_range(frames), per_frame=True))
    for h in horizons:
      frame = context_frames + h - 1
      scores.setdefault(f'horizon_{h}', {}).update(
          {f'{name}_psnr': float(psnr[:, frame].mean()),
           f'{name}_ssim': float(ssim[:, frame].mean())})
  return scores


def prior_fingerprint(config: ml_collections.ConfigDict, vqvae: FrozenVQVAE) -> dict[str, Any]:
  meta = fingerprint(config, ('data', 'model', 'train'), ignore=RESUMABLE_KEYS)
  meta.update({'seed': config.seed, **{f'vqvae.{k}': v for k, v in vqvae.fingerprint.items()}})
  return meta


def _clips(config: ml_collections.ConfigDict, vqvae: FrozenVQVAE, split: str, batch_size: int):
  """Batches of clips shaped as the VQ-VAE was trained: endless and random for 'train', the
  first windows in order for 'test'."""
  source, video_key, action_key = video_lib.open_videos(config.data.name, split,
                                                        config.data.data_dir)
  frames, resolution = vqvae.video_shape[:2]
  return video_lib.clip_batches(source, video_key, action_key, num_frames=frames,
                                resolution=resolution, batch_size=batch_size, seed=config.seed,
                                train=split == 'train')


def _first(batches, count: int) -> list[dict[str, np.ndarray]]:
  out = [b for b, _ in zip(batches, range(count))]
  if len(out) < count:
    raise ValueError(f'The test split has {len(out)} batches of clips; {count} are needed '
                     '(eval.num_clips, samples.num_videos, predict.num_clips).')
  return out


def _check_batch(batch, vqvae: FrozenVQVAE) -> None:
  if batch['video'].shape[1:] != vqvae.video_shape:
    raise ValueError(f'Data clips have shape {batch["video"].shape[1:]}; the VQ-VAE in '
                     f'vqvae.workdir was trained on {vqvae.video_shape} (its data.num_frames, '
                     'data.resolution, data.channels).')


def _save_videos(workdir: str, name: str, rows: list[np.ndarray]) -> np.ndarray:
  """Writes uint8 videos [N, T, H, W, C] per row as `name`.gif (each GIF frame: frame t of every
  video, one row per entry of `rows`) and `name`.png (every second frame of each video, the rows'
  videos interleaved); returns the PNG image."""
  rows = [np.repeat(r, 3, axis=-1) if r.shape[-1] == 1 else r for r in rows]
  frames = [images.image_strip([r[:, t] for r in rows]) for t in range(rows[0].shape[1])]
  images.save_gif(os.path.join(workdir, f'{name}.gif'), frames)
  strip = images.image_strip([r[i, ::2] for i in range(len(rows[0])) for r in rows])
  images.save_png(os.path.join(workdir, f'{name}.png'), strip)
  return strip


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, Any]:
  """Trains the prior for `train.num_steps` steps (resuming from `workdir` if possible), then
  samples and scores it; returns the results, also written to `workdir/results.json`."""
  workdir = os.path.abspath(workdir)
  os.makedirs(workdir, exist_ok=True)
  t = config.train
  vqvae = FrozenVQVAE(config.vqvae.workdir)
  prior = Prior(config, vqvae)
  check_settings(config, prior)
  mesh = training.make_mesh(config.mesh.data)
  batch_sharding = training.data_sharding(mesh, config.data.batch_size)
  iterator = iter(_clips(config, vqvae, 'train', config.data.batch_size))
  eval_count = config.eval.num_clips // config.eval.batch_size
  test_batches = _first(_clips(config, vqvae, 'test', config.eval.batch_size), eval_count)
  _check_batch(test_batches[0], vqvae)

  state = create_train_state(config, prior, test_batches[0], jax.random.PRNGKey(config.seed))
  state = jax.device_put(state, training.replicated(mesh))
  vqvae_variables = jax.device_put(vqvae.variables, training.replicated(mesh))
  manager = training.checkpoint_manager(os.path.join(workdir, 'checkpoints'),
                                      prior_fingerprint(config, vqvae))
  state = training.restore_latest(manager, state, iterator)

  step_fn = jit_train_step(prior, mesh, config.data.batch_size)
  log = training.MetricsLog(workdir)
  start_step = int(state.step)
  tokens = math.prod(vqvae.latent_shape)
  progress = tqdm.tqdm(initial=start_step, total=t.num_steps, desc='train VideoGPT prior',
                       unit='step')
  window = training.StepWindow('The prior', 'train.learning_rate')
  test_bits = None
  for step in range(start_step + 1, t.num_steps + 1):
    batch = next(iterator)
    _check_batch(batch, vqvae)
    state, metrics = step_fn(state, vqvae_variables, jax.device_put(batch, batch_sharding))
    window.add(metrics, len(batch['video']))
    if step % t.log_every == 0 or step == t.num_steps:
      means, clips_per_s = window.flush(step)
      log.write(step, {**{f'train/{k}': v for k, v in means.items()},
                       'train/tokens_per_s': clips_per_s * tokens})
      progress.set_postfix(bits_per_dim=f'{means["bits_per_dim"]:.3f}',
                           tokens_per_s=f'{clips_per_s * tokens:.0f}')
    if step % t.eval_every == 0 or step == t.num_steps:
      test_bits = bits_per_dim(prior, state.params, test_batches)
      log.write(step, {'eval/bits_per_dim': test_bits})
      progress.write(f'step {step}: test bits/dim {test_bits:.4f}')
    if step % t.checkpoint_every == 0 or step == t.num_steps:
      training.save(manager, step, state, iterator)
    progress.update(1)
  progress.close()
  manager.wait_until_finished()
  if test_bits is None:  # Already trained: score the final checkpoint.
    test_bits = bits_per_dim(prior, state.params, test_batches)
  results: dict[str, Any] = {'step': int(state.step), 'bits_per_dim': test_bits,
                             'eval_clips': eval_count * config.eval.batch_size,
                             'vqvae_step': vqvae.step}
  results.update(_sample_and_score(config, prior, state.params, workdir, log, int(state.step)))
  log.close()
  with open(os.path.join(workdir, 'results.json'), 'w') as f:
    json.dump(results, f, indent=2)
  return results


def check_settings(config: ml_collections.ConfigDict, prior: Prior) -> None:
  """Raises a ValueError naming the key of a sampling or prediction setting that cannot work, so
  that it fails before training rather than after."""
  s, p, e = config.samples, config.predict, config.eval
  if e.fvd_trials and not 2 <= e.fvd_videos <= s.num_videos:
    raise ValueError(f'eval.fvd_videos={e.fvd_videos} must lie in [2, samples.num_videos='
                     f'{s.num_videos}]: FVD compares that many samples with as many test clips.')
  reference = prior.vqvae.model.reference_frame
  if p.context_frames and reference is not None and reference >= p.context_frames:
    raise ValueError(f'The VQ-VAE decodes relative to frame {reference} (its '
                     f'model.reference_frame), which is not among the first '
                     f'predict.context_frames={p.context_frames} frames (the context): '
                     'predictions would see the future.')
  if p.context_frames:
    frames = prior.vqvae.video_shape[0]
    if p.context_frames % prior.frames_per_step or p.context_frames < prior.cond_frames:
      raise ValueError(f'predict.context_frames={p.context_frames} must be a multiple of the '
                       f'{prior.frames_per_step} frames per latent step and >= model.cond_frames='
                       f'{prior.cond_frames}.')
    if not p.horizons or p.context_frames + max(p.horizons) > frames or min(p.horizons) < 1:
      raise ValueError(f'predict.horizons={tuple(p.horizons)} must lie in [1, '
                       f'{frames - p.context_frames}]: the clip has {frames} frames, '
                       f'{p.context_frames} of them context.')
    if p.num_samples < 1 or (p.num_samples > 1 and p.top_k == 1):
      raise ValueError(f'predict.num_samples={p.num_samples} must be 1, or more with sampling '
                       f'(predict.top_k={p.top_k}; 1 is greedy, whose draws are all the same).')
    if p.num_clips < e.batch_size:
      raise ValueError(f'predict.num_clips={p.num_clips} must be at least eval.batch_size='
                       f'{e.batch_size}.')


def _sample_and_score(config, prior: Prior, params, workdir: str, log,
                      step: int) -> dict[str, Any]:
  """Samples (FVD against test clips) and, for world models, scored predictions.
  'sampling_seconds' includes compiling the sampler."""
  s, p, e = config.samples, config.predict, config.eval
  vqvae, results = prior.vqvae, {}
  sample_key, predict_key = jax.random.split(jax.random.PRNGKey(config.seed + 1))
  if s.num_videos:
    batches = _first(_clips(config, vqvae, 'test', e.batch_size), -(-s.num_videos // e.batch_size))
    start = time.perf_counter()
    samples = sample_videos(prior, params, batches, sample_key, 0, s.temperature,
                            s.top_k)[:s.num_videos]
    results['sampling_seconds'] = round(time.perf_counter() - start, 1)
    real = np.concatenate([b['video'] for b in batches])[:s.num_videos]
    strip = _save_videos(workdir, 'samples', [samples[:8]])
    log.image('samples', strip, step)
    if e.fvd_trials:
      results.update({f'sample_{k}': v for k, v in vqvae_lib.reconstruction_fvd(
          real, samples, e.fvd_trials, e.fvd_videos, config.seed).items()})
  if p.context_frames:
    batches = _first(_clips(config, vqvae, 'test', e.batch_size), p.num_clips // e.batch_size)
    predicted = sample_videos(prior, params, batches, predict_key,
                              p.context_frames // prior.frames_per_step, p.temperature, p.top_k,
                              p.num_samples)
    truth = np.concatenate([b['video'] for b in batches])
    reconstructed = np.concatenate([jax.device_get(vqvae_lib.reconstruct(
        vqvae.model.apply, vqvae.variables, b['video'])['reconstructions']) for b in batches])
    reconstructed = np.round((reconstructed + 0.5) * 255).astype(np.uint8)
    results['prediction'] = prediction_scores(truth, predicted, reconstructed, p.context_frames,
                                              p.horizons)
    results['prediction_clips'] = len(truth)
    strip = _save_videos(workdir, 'predictions', [truth[:4], predicted[:4]])
    log.image('truth_over_predictions', strip, step)
  return results
