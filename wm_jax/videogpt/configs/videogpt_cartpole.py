"""VideoGPT as an action-conditioned world model of pixel CartPole, sized for a 2-core CPU.

The prior models the 4x16x16 codes of the VQ-VAE of experiments/configs/vqvae_cartpole.py
(by default codes relative to frame 7, the last context frame, from which predictions decode),
each latent step (4 frames) conditioned through conditional LayerNorm on the one-hot actions
that led to its frames. Prediction keeps the codes of the first 8 frames (the context) and
samples the rest given the clip's actions; the predicted frames are scored against the true
ones 1, 4 and 8 frames after the context, beside repeating the last context frame.

  python -m experiments.world_models --workdir=runs/cartpole_video --stage=collect \
      --config.collect.num_episodes=5000
  python -m experiments.train_vqvae --config=experiments/configs/vqvae_cartpole.py \
      --workdir=runs/vqvae_cartpole
  python -m experiments.train_videogpt --config=experiments/configs/videogpt_cartpole.py \
      --workdir=runs/videogpt_cartpole

Each prediction is the pixel mean of 16 sampled futures (`predict.num_samples`), the prior's
expected video: frames are scored against one true future by squared error, which the mean
minimises under the prior (measured, README: better than one draw at every horizon and than
greedy 1 and 4 frames ahead; blurred where the draws disagree).
`--config.predict.top_k=1 --config.predict.num_samples=1` is greedy (the most likely code at
each position); `--config.predict.num_samples=1` one draw.

Training: 3,200 steps without dropout (~100 min here, 1.89 s per step); test bits/dim 0.765.
The authors' dropout 0.2 left the prior less fitted after as many steps (at 1,600 steps 1.209
against 1.047 without). A run sees 25,600 clips, about 12 random windows of each of the 2,125
training episodes, which hold 22,510 distinct 16-frame windows. The context reaches the prior
as its own codes (the prefix); `model.cond_frames=8` adds the paper's cross-attention to a 3D
ResNet over the context frames, whose 64x64 frames make a training step ~24x slower on this CPU
(45 s, measured).
"""

from wm_jax.videogpt.configs import videogpt_moving_digits


def get_config():
  config = videogpt_moving_digits.get_config()
  config.vqvae.workdir = 'runs/vqvae_cartpole'
  config.data.name = 'world_models'
  config.data.data_dir = 'runs/cartpole_video'
  config.data.action_dim = 2  # CartPole: push left / right, one-hot.
  config.eval.fvd_trials = 0
  config.samples.num_videos = 8
  config.predict.context_frames = 8
  config.predict.num_clips = 64
  config.model.dropout = 0.0
  config.train.num_steps = 3200
  config.predict.num_samples = 16  # Drawn with plain softmax sampling (top_k 0, temperature 1).
  return config
