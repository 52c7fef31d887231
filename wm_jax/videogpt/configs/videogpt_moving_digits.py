"""VideoGPT prior on Moving-Digits codes, sized for a 2-core CPU. Every key any prior run reads
is here: the other videogpt_*.py configs import this one and change fields.

It models the 4x16x16 codes of the VQ-VAE trained with `vqvae_moving_digits.py`
(run that first); the clip shape comes from that run. The paper's Moving MNIST prior is 8
layers, 4 heads, width 192 (table 9): here 4 layers of width 144, unconditional. ':tiny' is a
smoke test's, over a `vqvae_moving_digits:tiny` run: a one-layer prior, a few steps.

  python -m experiments.train_videogpt --workdir=runs/videogpt_digits \
      --config.vqvae.workdir=runs/vqvae_digits
"""

import ml_collections


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.mesh = ml_collections.ConfigDict({'data': 1})  # Devices on the batch ('data') axis.
  # A trained VQ-VAE run (experiments/train_vqvae.py); its latest checkpoint is used, frozen.
  config.vqvae = ml_collections.ConfigDict({'workdir': 'runs/vqvae_digits'})

  config.data = ml_collections.ConfigDict()
  config.data.name = 'moving_digits'  # Any of wm_jax.data.video.SOURCES.
  config.data.data_dir = ''  # As in the VQ-VAE configs.
  config.data.batch_size = 8  # Paper: 32.
  # Actions through conditional LayerNorm: one-hot size of integer actions (or the size of
  # action vectors); 0 = unconditional on actions.
  config.data.action_dim = 0

  _add_model_and_training(config)
  _add_evaluation(config)
  if variant == 'tiny':
    config.data.name = 'moving_digits_small'
    shrink_to_tiny(config)
  elif variant:
    raise ValueError(f"videogpt_moving_digits.py takes 'tiny' after ':', got {variant!r}.")
  return config


def shrink_to_tiny(config: ml_collections.ConfigDict) -> None:
  """A one-layer prior of width 24, 4 steps of batch 4, 4 samples, no FVD (the tests')."""
  config.data.batch_size = 4
  config.model.update(width=24, num_heads=2, num_layers=1)
  config.train.update(num_steps=4, learning_rate=3e-3, log_every=2, eval_every=2,
                      checkpoint_every=2)
  config.eval.update(num_clips=8, batch_size=4, fvd_trials=0)
  config.samples.num_videos = 4


def _add_model_and_training(config: ml_collections.ConfigDict) -> None:
  """The prior (`VideoGPT(**config.model)`) and its optimiser."""
  config.model = ml_collections.ConfigDict()
  config.model.width = 144  # Paper (Moving MNIST): 192; BAIR 512; UCF-101 1024.
  config.model.num_heads = 4
  config.model.num_layers = 4  # Paper: 8 (Moving MNIST), 16 (BAIR), 20 (UCF-101).
  config.model.mlp_ratio = 4
  config.model.dropout = 0.2
  config.model.attention_dropout = 0.3  # Dense self-attention only (as the authors' code).
  config.model.attention = 'sparse'  # or 'dense' (causal).
  config.model.attention_impl = 'block_sparse'  # or 'masked': same numbers.
  config.model.block_size = 32
  config.model.num_local_blocks = 4
  config.model.position_embedding = 'concat'  # or 'sum' (widths not divisible by 3).
  # Conditioning frames: the clip's first cond_frames frames through a 3D ResNet, cross-attended
  # by every block (0 = none). ResNet-18: (2, 2, 2, 2); ResNet-34: (3, 4, 6, 3).
  config.model.cond_frames = 0
  config.model.resnet_blocks = (2, 2, 2, 2)
  config.model.resnet_widths = (64, 128, 256, 240)
  config.model.resnet_stem = 64
  # 'bfloat16': mixed precision (parameters, softmax and logits float32); BENCHMARKS.md has its
  # speed and loss beside float32.
  config.model.dtype = 'float32'

  config.train = ml_collections.ConfigDict()
  config.train.learning_rate = 3e-4  # Adam, cosine decay to 0 over num_steps (authors' code).
  config.train.grad_clip = 1.0  # Global-norm clipping (authors' paper code); 0 = none.
  config.train.num_steps = 800
  config.train.log_every = 25
  config.train.eval_every = 250
  config.train.checkpoint_every = 250


def _add_evaluation(config: ml_collections.ConfigDict) -> None:
  """Bits/dim and FVD, samples, and world-model predictions."""
  config.eval = ml_collections.ConfigDict()
  config.eval.num_clips = 128  # First clips of the test split, for bits/dim.
  config.eval.batch_size = 16
  # FVD of the samples against as many real test clips (I3D, the `video` extra): trials of
  # fvd_videos clips (paper: 256 per trial, 4 trials).
  config.eval.fvd_trials = 1
  config.eval.fvd_videos = 32

  config.samples = ml_collections.ConfigDict()
  config.samples.num_videos = 32  # Sampled at the end (conditioned on test clips if conditional).
  config.samples.temperature = 1.0  # The authors' sampler: plain softmax sampling.
  config.samples.top_k = 0  # 0 = all codes.

  # World-model prediction: the first context_frames frames' codes are kept, the rest sampled
  # given the clip's actions; PSNR/SSIM at `horizons` frames after the context (0 = off).
  config.predict = ml_collections.ConfigDict()
  config.predict.context_frames = 0
  config.predict.horizons = (1, 4, 8)
  config.predict.num_clips = 64
  config.predict.temperature = 1.0
  config.predict.top_k = 0  # 1 = the most likely code at every position (greedy).
  # > 1: each prediction is the pixel mean of that many sampled futures (the prior's expected
  # video, the least squared error under the prior; blurred where the draws disagree).
  config.predict.num_samples = 1
