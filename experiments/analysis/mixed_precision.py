"""What mixed precision (`model.dtype='bfloat16'`) does to each model's loss: every trainer run
twice through the library, float32 then bfloat16, from the same seed on the same pixel-CartPole
rollouts, and their losses side by side.

  python -m experiments.analysis.mixed_precision --workdir=runs/mixed_precision \
      [--episodes=1000] [--vae_steps=1200] [--mdn_epochs=60] [--vqvae_steps=300] \
      [--prior_steps=300]

- V and M: the World Models default config (CartPole). V is trained in each dtype; M in each
  dtype on the latents of the float32 V, so that its two runs see the same data.
- The VQ-VAE and the prior: `vqvae_cartpole` and `videogpt_cartpole` on the same rollouts; the
  prior in each dtype over the float32 VQ-VAE.
Training loss: the mean of the last 5 logged values (V: per image, the paper's summed squared
error + KL; M: per step, NLL + done loss; VQ-VAE: MSE / data variance + commitment; prior:
nats per code). Held-out scores: the VQ-VAE's test PSNR and the prior's test bits per code.
Every run resumes from its workdir, so a killed run continues where it stopped. Speed is
BENCHMARKS.md's (`python -m experiments.benchmarks`), not this script's.
"""

import os
import shutil

import numpy as np
from absl import app, flags

from wm_jax.common import training
from wm_jax.videogpt import configs as videogpt_configs
from wm_jax.videogpt import prior as prior_lib
from wm_jax.videogpt import vqvae as vqvae_lib
from wm_jax.world_models import Workdir, configs as wm_configs, run

_WORKDIR = flags.DEFINE_string('workdir', None, 'Where the runs go (resumed if there).',
                               required=True)
_EPISODES = flags.DEFINE_integer('episodes', 1000, 'Random CartPole episodes collected.')
_VAE_STEPS = flags.DEFINE_integer('vae_steps', 1200, "V's steps (default config: 1200).")
_MDN_EPOCHS = flags.DEFINE_integer('mdn_epochs', 60, "M's epochs (default config: 60).")
_VQVAE_STEPS = flags.DEFINE_integer('vqvae_steps', 300, "The VQ-VAE's steps (config: 1200).")
_PRIOR_STEPS = flags.DEFINE_integer('prior_steps', 300, "The prior's steps (config: 3200).")

DTYPES = ('float32', 'bfloat16')


def final_loss(directory: str, name: str, last: int = 5) -> float:
  """The mean of the last `last` logged values of series `name` in `directory`/metrics.jsonl."""
  _, values = training.read_metrics(os.path.join(directory, 'metrics.jsonl'))[name]
  return float(np.mean(values[-last:]))


def world_models_config(dtype_key: str, dtype: str):
  config = wm_configs.get('default')
  config.collect.num_episodes = _EPISODES.value
  config.vae.num_steps = _VAE_STEPS.value
  config.mdn.num_epochs = _MDN_EPOCHS.value
  config.vae.model.dtype = config.mdn.model.dtype = 'float32'
  if dtype_key == 'vae':
    config.vae.model.dtype = dtype
  else:
    config.mdn.model.dtype = dtype
  return config


def main(argv):
  del argv
  root = os.path.abspath(_WORKDIR.value)
  rows = []  # (model, score, float32, bfloat16)
  rollouts = os.path.join(root, 'rollouts')
  run(world_models_config('vae', 'float32'), rollouts, ['collect'])

  v, m = {}, {}
  for dtype in DTYPES:
    workdir = os.path.join(root, f'v_{dtype}')
    if not os.path.exists(Workdir(workdir).rollouts):
      shutil.copytree(Workdir(rollouts).rollouts, Workdir(workdir).rollouts)
    run(world_models_config('vae', dtype), workdir, ['vae'])
    v[dtype] = final_loss(Workdir(workdir).vae, 'vae/loss')
  rows.append(('V', 'training loss', v['float32'], v['bfloat16']))

  float32_v = os.path.join(root, 'v_float32')
  run(world_models_config('mdn', 'float32'), float32_v, ['encode'])
  for dtype in DTYPES:
    workdir = os.path.join(root, f'm_{dtype}')
    if not os.path.exists(workdir):  # The float32 V and its latents, without an M.
      shutil.copytree(float32_v, workdir, ignore=shutil.ignore_patterns('mdn'))
    run(world_models_config('mdn', dtype), workdir, ['mdn'])
    m[dtype] = final_loss(Workdir(workdir).mdn(), 'mdn/loss')
  rows.append(('M', 'training loss', m['float32'], m['bfloat16']))

  vqvae_workdir = os.path.join(root, 'vqvae_float32')
  for model, config_name, train, steps, score, score_name in (
      ('VQ-VAE', 'vqvae_cartpole', vqvae_lib.train_and_evaluate, _VQVAE_STEPS.value, 'psnr',
       'test PSNR (dB)'),
      ('prior', 'videogpt_cartpole', prior_lib.train_and_evaluate, _PRIOR_STEPS.value,
       'bits_per_dim', 'test bits per code')):
    runs = {}
    for dtype in DTYPES:
      config = videogpt_configs.get(config_name)
      config.data.data_dir = rollouts
      config.train.num_steps = steps
      config.model.dtype = dtype
      if model == 'prior':
        config.vqvae.workdir = vqvae_workdir
        # The test clips of --episodes=1000 hold 3 batches; the scores need bits/dim only.
        config.eval.num_clips = 3 * config.eval.batch_size
        config.predict.update(num_clips=config.eval.batch_size, num_samples=1)
      workdir = os.path.join(root, f'{config_name.split("_")[0]}_{dtype}')
      results = train(config, workdir)
      runs[dtype] = final_loss(workdir, 'train/loss'), results[score]
    rows.append((model, 'training loss', runs['float32'][0], runs['bfloat16'][0]))
    rows.append((model, score_name, runs['float32'][1], runs['bfloat16'][1]))

  print('| model | score | float32 | bfloat16 | bfloat16 - float32 |\n|---|---|---|---|---|')
  for model, score, full, mixed in rows:
    print(f'| {model} | {score} | {full:.4f} | {mixed:.4f} | {mixed - full:+.4f} |')


if __name__ == '__main__':
  app.run(main)
