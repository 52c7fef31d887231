"""The VQ-VAE trainer on clips of World Models rollouts (small model, a few steps)."""

import importlib
import json
import os
import types

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from wm_jax.videogpt.configs import vqvae_moving_digits
from wm_jax.common import training
from wm_jax.common.config import check_keys
from conftest import tiny_vqvae_config as tiny_config
from wm_jax.videogpt import vqvae


def _params(workdir, config):
  manager = vqvae.training.checkpoint_manager(os.path.join(workdir, 'checkpoints'),
                                            vqvae.vqvae_fingerprint(config))
  state = vqvae.create_train_state(config, jax.random.PRNGKey(0))
  restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore(vqvae.training.abstract(state))))
  return restored['state']


def test_trains_scores_and_resumes_where_a_straight_run_ends(clip_workdir, tmp_path,
                                                             monkeypatch):
  config = tiny_config(clip_workdir)
  straight = str(tmp_path / 'straight')
  with monkeypatch.context() as patch:  # The train step compiles once.
    patch.setattr(vqvae, 'train_step', chex.assert_max_traces(vqvae.train_step, n=1))
    results = vqvae.train_and_evaluate(config, straight)
  assert results['step'] == 4 and results['num_clips'] == 8
  for key in ('mse', 'psnr', 'ssim', 'perplexity', 'usage'):
    assert np.isfinite(results[key])
  assert 0 < results['usage'] <= 1 and 1 <= results['perplexity'] <= 32
  with open(os.path.join(straight, 'results.json')) as f:
    assert json.load(f) == results
  for picture in ('reconstructions.png', 'reconstructions.gif'):
    assert os.path.exists(os.path.join(straight, picture))
  rows = [json.loads(line) for line in open(os.path.join(straight, 'metrics.jsonl'))]
  assert {'train/loss', 'train/perplexity', 'train/clips_per_s'} <= set(rows[0])
  assert any('eval/psnr' in row for row in rows)

  interrupted = str(tmp_path / 'interrupted')
  config.train.num_steps = 2  # A run killed after its step-2 checkpoint ...
  vqvae.train_and_evaluate(config, interrupted)
  config.train.num_steps = 4  # ... and resumed.
  resumed = vqvae.train_and_evaluate(config, interrupted)
  assert resumed == results
  a, b = _params(straight, config), _params(interrupted, config)
  jax.tree.map(np.testing.assert_array_equal, (a.params, a.codebook, a.batch_stats),
               (b.params, b.codebook, b.batch_stats))


def test_clips_of_the_wrong_shape_name_the_config_keys(clip_workdir, tmp_path):
  config = tiny_config(clip_workdir)
  config.data.channels = 1
  with pytest.raises(ValueError, match='data.channels'):
    vqvae.train_and_evaluate(config, str(tmp_path))


def test_a_workdir_of_another_config_is_refused(clip_workdir, tmp_path):
  config = tiny_config(clip_workdir)
  config.train.num_steps = 2
  vqvae.train_and_evaluate(config, str(tmp_path))
  config.model.num_codes = 64
  with pytest.raises(ValueError, match='model.num_codes'):
    vqvae.train_and_evaluate(config, str(tmp_path))


def test_data_without_clips_and_bad_values_are_refused_before_training(clip_workdir, tmp_path):
  """Each is found before the first step and before a checkpoint directory exists (a grain
  pipeline of clips longer than every episode would otherwise skip episodes forever)."""
  for changes, match in (
      ({'eval.batch_size': 64, 'eval.num_clips': 64},  # The test split has 12 episodes.
       "test split of data.name='world_models'.* than one batch \\(eval.batch_size=64\\)"),
      ({'eval.num_clips': 3}, 'eval.num_clips=3 must be at least eval.batch_size=4'),
      ({'data.num_frames': 64}, 'data.num_frames=64 is longer than every video of the training '
                                'data: the longest.* has \\d+ frames'),
      ({'eval.fvd_trials': 1, 'eval.fvd_videos': 9}, 'eval.fvd_videos=9 must lie in \\[2, 8\\]'),
      ({'train.num_steps': 0, 'train.learning_rate': -1.0, 'data.batch_size': 0,
        'eval.fvd_trials': -1}, 'Config values out of range')):
    config = tiny_config(clip_workdir)
    config.update_from_flattened_dict(changes)
    with pytest.raises(ValueError, match=match) as error:
      vqvae.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / 'checkpoints')
  for line in ('train.num_steps = 0: must be >= 1', 'train.learning_rate = -1.0: must be > 0',
               'data.batch_size = 0: must be >= 1', 'eval.fvd_trials = -1: must be >= 0'):
    assert line in str(error.value)  # Every value out of range, in one error.


def test_results_json_is_written_last_and_whole(clip_workdir, tmp_path, monkeypatch):
  """A run killed while writing results.json leaves none (a finished run is one with
  results.json); run again, it only evaluates and writes every output again."""
  config = tiny_config(clip_workdir)
  config.train.num_steps = 1

  def dump_then_die(results, f, **kwargs):
    f.write('{"step": ')
    raise KeyboardInterrupt

  with monkeypatch.context() as patch:
    patch.setattr(training, 'json', types.SimpleNamespace(
        dump=dump_then_die, dumps=json.dumps, load=json.load, loads=json.loads))
    with pytest.raises(KeyboardInterrupt):
      vqvae.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'results.json')
  os.remove(tmp_path / 'reconstructions.png')  # As if killed while writing it, after the step.
  results = vqvae.train_and_evaluate(config, str(tmp_path))
  assert results['step'] == 1 and os.path.exists(tmp_path / 'reconstructions.png')
  with open(tmp_path / 'results.json') as f:
    assert json.load(f) == results


def test_reconstruction_fvd_is_reported_when_asked(clip_workdir, tmp_path):
  config = tiny_config(clip_workdir)
  config.data.num_frames = 10  # I3D needs >= 9 frames.
  config.train.num_steps = 1
  config.eval.fvd_trials = 2
  config.eval.fvd_videos = 3
  results = vqvae.train_and_evaluate(config, str(tmp_path))
  assert results['fvd_trials'] == 2 and results['fvd_videos'] == 3
  assert results['fvd'] > 0 and results['fvd_std'] >= 0
  config.eval.fvd_videos = 9  # More than the 8 clips scored.
  with pytest.raises(ValueError, match='eval.fvd_videos=9'):
    vqvae.train_and_evaluate(config, str(tmp_path))


# BAIR: derived layer by layer in tests/video_vqvae_test.py. UCF-101 adds one 240 -> 240 kernel-4
# conv on each side (2 x (64 x 240 x 240 + 240)) and its latent has 4 frames, not 8 (position
# embeddings: 8 blocks x 4 x 240 fewer). Moving MNIST (1 channel, no attention): encoder convs
# 15,600 + 3,686,640 + 1,555,440 (k3), 2 blocks x (829,440 + 30,720 + 736 BN) + 480 BN =
# 6,979,952; 1x1x1 convs 15,424 + 15,600; decoder 1,722,272 + 3,686,640 + 15,361 = 5,424,273.
PAPER_PARAMETERS = {'vqvae_bair': 14_336_787,
                    'vqvae_ucf101': 14_336_787 + 2 * (64 * 240 * 240 + 240) - 8 * 4 * 240,
                    'vqvae_moving_mnist': 12_435_249}


@pytest.mark.parametrize('name', sorted(PAPER_PARAMETERS))
def test_paper_configs_build_the_paper_models(name):
  config = importlib.import_module(f'wm_jax.videogpt.configs.{name}').get_config()
  check_keys(config, vqvae_moving_digits.get_config(), 'vqvae_moving_digits.py')
  state = jax.eval_shape(lambda: vqvae.create_train_state(config, jax.random.PRNGKey(0)))
  assert sum(x.size for x in jax.tree.leaves(state.params)) == PAPER_PARAMETERS[name]
  assert config.data.name in vqvae.video_lib.SOURCES


@pytest.mark.parametrize('variant', ['reference', 'paper', 'tiny'])
def test_cartpole_config_variants(variant):
  from wm_jax.videogpt.configs import videogpt_cartpole, vqvae_cartpole
  config = vqvae_cartpole.get_config(variant)
  check_keys(config, vqvae_moving_digits.get_config(), 'vqvae_moving_digits.py')
  if variant in ('paper', 'tiny'):
    assert config.model.reference_frame is None and config.train.data_variance == 0.06
  else:  # Decoded relative to the last frame the world model's prior is given.
    assert config.model.reference_frame == videogpt_cartpole.get_config().predict.context_frames - 1
  with pytest.raises(ValueError, match="vqvae_cartpole.py takes one of"):
    vqvae_cartpole.get_config('bair')
