"""VideoGPT VQ-VAE on Moving-Digits (generated offline), sized for a 2-core CPU.

The codebook and downsampling are the paper's Moving MNIST ones (512 codes x 64 dims,
16x64x64 -> 4x16x16, no attention, 2 residual layers); the convolutions are narrower (hidden
64, residual units 32; paper: 240, 128) so that a run fits the CPU budget. Every key any
VQ-VAE run reads is here: the other vqvae_*.py configs import this one and change fields.
':tiny' is a smoke test's (the notebook's tests): 8-frame 32x32 clips of the 320-clip
'moving_digits_small', a small model, a few steps.

  python -m experiments.train_vqvae --workdir=runs/vqvae_digits
"""

import ml_collections


def get_config(variant: str = '') -> ml_collections.ConfigDict:
  config = ml_collections.ConfigDict()
  config.seed = 0
  config.mesh = ml_collections.ConfigDict({'data': 1})  # Devices on the batch ('data') axis.

  config.data = ml_collections.ConfigDict()
  config.data.name = 'moving_digits'  # Any of wm_jax.data.video.SOURCES.
  # TFDS data_dir ('' = TFDS's default, ~/tensorflow_datasets); for 'world_models' the
  # World Models workdir whose rollouts become clips.
  config.data.data_dir = ''
  config.data.num_frames = 16
  config.data.resolution = 64
  config.data.channels = 1
  config.data.batch_size = 16  # Paper: 32.

  config.model = ml_collections.ConfigDict()
  config.model.hidden = 64  # Paper (Moving MNIST): 240.
  config.model.residual_units = 32  # Paper: 128.
  config.model.num_res_layers = 2
  config.model.num_codes = 512
  config.model.code_dim = 64
  config.model.downsample = (4, 4, 4)
  config.model.attention = False  # Paper: no attention for Moving MNIST.
  config.model.position_embeddings = True
  config.model.conv_impl = 'folded'  # or 'xla': same math (models/strided_conv3d.py).
  # Not in the paper: codes relative to this frame of each clip (None: the paper's VQ-VAE); see
  # wm_jax/videogpt/models/video_vqvae.py and docs/videogpt.md (the CartPole world model).
  config.model.reference_frame = ml_collections.config_dict.placeholder(int)
  # 'bfloat16': mixed precision (parameters and statistics float32); BENCHMARKS.md has its
  # speed and loss beside float32.
  config.model.dtype = 'float32'

  config.train = ml_collections.ConfigDict()
  config.train.learning_rate = 7e-4  # Paper: 7e-4 (authors' code: 3e-4).
  config.train.data_variance = 0.06  # The authors' constant for [-0.5, 0.5] data.
  config.train.commitment_weight = 0.25
  config.train.num_steps = 3000  # Paper (Moving MNIST): 20k at batch 32.
  config.train.log_every = 25
  config.train.eval_every = 250
  config.train.checkpoint_every = 250

  config.eval = ml_collections.ConfigDict()
  config.eval.num_clips = 256  # First clips of the test split.
  config.eval.batch_size = 16
  # Reconstruction FVD at the end (I3D, the `video` extra): trials of fvd_videos clips drawn from
  # the eval clips (paper: 256 per trial). Off here: I3D is slow on a CPU.
  config.eval.fvd_trials = 0
  config.eval.fvd_videos = 256
  if variant == 'tiny':
    config.data.name = 'moving_digits_small'
    shrink_to_tiny(config)
  elif variant:
    raise ValueError(f"vqvae_moving_digits.py takes 'tiny' after ':', got {variant!r}.")
  return config


def shrink_to_tiny(config: ml_collections.ConfigDict) -> None:
  """A VQ-VAE on 8-frame 32x32 clips with 4x8x8 codes of 32, trained 4 steps (the tests')."""
  config.data.num_frames = 8
  config.data.resolution = 32
  config.data.batch_size = 4
  config.model.update(hidden=16, residual_units=8, num_res_layers=1, num_codes=32, code_dim=8,
                      downsample=(2, 4, 4), attention=True)
  config.train.update(num_steps=4, log_every=2, eval_every=2, checkpoint_every=2)
  config.eval.num_clips = 8
  config.eval.batch_size = 4
