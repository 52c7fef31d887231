"""The prior's trainer: an action- and frame-conditioned world model over a tiny VQ-VAE."""

import json
import os
import shutil
import types

import chex
import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest

from conftest import tiny_prior_config as tiny_config
from conftest import tiny_vqvae_config
from wm_jax.common import training
from wm_jax.videogpt import prior as prior_lib
from wm_jax.videogpt import sampling, vqvae
from wm_jax.videogpt.latent_prior import FrozenVQVAE, Prior, action_condition


def _params(workdir):
  manager = ocp.CheckpointManager(os.path.join(workdir, 'checkpoints'))
  restored = manager.restore(manager.latest_step(), args=ocp.args.Composite(
      state=ocp.args.StandardRestore()))
  return restored['state']['params']


def test_trains_predicts_and_resumes_where_a_straight_run_ends(vqvae_workdir, clip_workdir,
                                                              tmp_path, monkeypatch):
  config = tiny_config(vqvae_workdir, clip_workdir)
  straight = str(tmp_path / 'straight')
  with monkeypatch.context() as patch:  # The train step compiles once.
    patch.setattr(prior_lib, 'train_step', chex.assert_max_traces(prior_lib.train_step, n=1))
    results = prior_lib.train_and_evaluate(config, straight)
  assert results['step'] == 4 and results['eval_clips'] == 8 and results['vqvae_step'] == 4
  # The zero-initialised output layer starts at log2(32) = 5 bits; 4 steps at lr 3e-3 learn.
  assert 0 < results['bits_per_dim'] < 5
  horizon = results['prediction']['horizon_4']
  for name in ('prediction', 'copy_last', 'reconstruction'):
    assert np.isfinite(horizon[f'{name}_psnr']) and -1 <= horizon[f'{name}_ssim'] <= 1
  assert set(results['prediction']) == {'horizon_1', 'horizon_4'}
  with open(os.path.join(straight, 'results.json')) as f:
    assert json.load(f) == results
  for name in ('samples.gif', 'samples.png', 'predictions.gif', 'predictions.png'):
    assert os.path.exists(os.path.join(straight, name))
  rows = [json.loads(line) for line in open(os.path.join(straight, 'metrics.jsonl'))]
  assert {'train/bits_per_dim', 'train/tokens_per_s', 'train/grad_norm'} <= set(rows[0])
  assert sum('eval/bits_per_dim' in row for row in rows) == 2

  # A run killed right after its step-2 checkpoint, then started again, ends as the straight run.
  save = training.save

  def save_then_die(manager, step, state, iterator):
    save(manager, step, state, iterator)
    if step == 2:
      manager.wait_until_finished()
      raise KeyboardInterrupt

  interrupted = str(tmp_path / 'interrupted')
  monkeypatch.setattr(training, 'save', save_then_die)
  with pytest.raises(KeyboardInterrupt):
    prior_lib.train_and_evaluate(config, interrupted)
  monkeypatch.setattr(training, 'save', save)
  resumed = prior_lib.train_and_evaluate(config, interrupted)
  assert resumed == {**results, 'sampling_seconds': resumed['sampling_seconds']}
  jax.tree.map(np.testing.assert_array_equal, _params(straight), _params(interrupted))


@pytest.mark.parametrize('vqvae_fixture', ['vqvae_workdir', 'reference_vqvae_workdir'])
def test_predictions_do_not_see_the_frames_after_the_context(vqvae_fixture, clip_workdir,
                                                             request):
  vqvae_workdir = request.getfixturevalue(vqvae_fixture)
  config = tiny_config(vqvae_workdir, clip_workdir)
  prior = Prior(config, FrozenVQVAE(vqvae_workdir))
  rng = np.random.default_rng(0)
  batch = {'video': rng.integers(0, 256, (2, 8, 32, 32, 3), np.uint8),
           'actions': rng.integers(0, 2, (2, 8)).astype(np.int32)}
  params = prior.init(jax.random.PRNGKey(0), batch)
  params['output_proj']['kernel'] = jax.random.normal(jax.random.PRNGKey(1),
                                                      params['output_proj']['kernel'].shape)
  predict = lambda b: sampling.generate(prior, params, prior.vqvae.variables, b,
                                        jax.random.PRNGKey(2), prefix_steps=2)
  future = dict(batch, video=batch['video'].copy())
  future['video'][:, 4:] = 255 - future['video'][:, 4:]  # Frames 4.. (after the context) change.
  np.testing.assert_array_equal(predict(batch), predict(future))
  context = dict(batch, video=batch['video'].copy())
  context['video'][:, 3] = 0  # The last context frame changes.
  assert not np.array_equal(predict(batch), predict(context))


def test_a_prediction_of_several_draws_is_their_pixel_mean(vqvae_workdir, clip_workdir):
  config = tiny_config(vqvae_workdir, clip_workdir)
  prior = Prior(config, FrozenVQVAE(vqvae_workdir))
  rng = np.random.default_rng(0)
  batches = [{'video': rng.integers(0, 256, (2, 8, 32, 32, 3), np.uint8),
              'actions': rng.integers(0, 2, (2, 8)).astype(np.int32)} for _ in range(2)]
  params = prior.init(jax.random.PRNGKey(0), batches[0])
  params['output_proj']['kernel'] = jax.random.normal(jax.random.PRNGKey(1),
                                                      params['output_proj']['kernel'].shape)
  key = jax.random.PRNGKey(2)
  draws = [np.concatenate([sampling.generate(prior, params, prior.vqvae.variables, batch,
                                             jax.random.fold_in(key, k * 2 + i), prefix_steps=2)
                           for i, batch in enumerate(batches)]) for k in range(3)]
  assert not np.array_equal(draws[0], draws[1])
  to_uint8 = lambda v: np.round((v + 0.5) * 255).astype(np.uint8)
  mean = sampling.sample_videos(prior, params, batches, key, 2, 1.0, 0, num_samples=3)
  np.testing.assert_array_equal(mean, to_uint8((draws[0] + draws[1] + draws[2]) / 3))
  single = sampling.sample_videos(prior, params, batches, key, 2, 1.0, 0)
  np.testing.assert_array_equal(single, to_uint8(draws[0]))


def test_actions_are_the_ones_that_led_to_each_latent_steps_frames():
  actions = np.array([[1, 0, 1, 1]])
  c = np.asarray(action_condition(actions, 2, 2))
  # Frames 0, 1 follow (nothing, action 1); frames 2, 3 follow actions 0, 1.
  np.testing.assert_array_equal(c, [[[0, 0, 0, 1], [1, 0, 0, 1]]])
  with pytest.raises(ValueError, match='data.action_dim'):
    action_condition(np.zeros((1, 4, 3), np.float32), 2, 2)


def test_bad_settings_are_named(vqvae_workdir, reference_vqvae_workdir, clip_workdir, tmp_path):
  config = tiny_config(vqvae_workdir, clip_workdir)
  config.vqvae.workdir = str(tmp_path / 'none')
  with pytest.raises(FileNotFoundError, match='vqvae.workdir'):
    prior_lib.train_and_evaluate(config, str(tmp_path / 'a'))
  config = tiny_config(vqvae_workdir, clip_workdir)
  prior = Prior(config, FrozenVQVAE(vqvae_workdir))
  with pytest.raises(ValueError, match='data.action_dim'):  # Clips without actions.
    prior.conditions({'video': np.zeros((2, 8, 32, 32, 3), np.uint8)})
  for key, value, match in (('predict.context_frames', 3, 'predict.context_frames'),
                            ('predict.horizons', (1, 5), 'predict.horizons'),
                            ('eval.fvd_trials', 1, 'eval.fvd_videos'),
                            ('predict.num_samples', 0, 'predict.num_samples')):
    config = tiny_config(vqvae_workdir, clip_workdir)
    section, name = key.split('.')
    config[section][name] = value
    with pytest.raises(ValueError, match=match):  # Before any training.
      prior_lib.train_and_evaluate(config, str(tmp_path / 'c'))
    assert not os.path.exists(tmp_path / 'c' / 'checkpoints')
  config = tiny_config(vqvae_workdir, clip_workdir)
  config.predict.top_k, config.predict.num_samples = 1, 2  # Greedy draws are all the same.
  with pytest.raises(ValueError, match='predict.num_samples'):
    prior_lib.train_and_evaluate(config, str(tmp_path / 'e'))
  # A VQ-VAE that decodes relative to frame 3 needs it in the context.
  config = tiny_config(reference_vqvae_workdir, clip_workdir)
  config.predict.context_frames = 2
  config.model.cond_frames = 0
  with pytest.raises(ValueError, match='model.reference_frame'):
    prior_lib.train_and_evaluate(config, str(tmp_path / 'd'))
  assert not os.path.exists(tmp_path / 'd' / 'checkpoints')
  # The VQ-VAE's clip shape and latent grid are the prior's: read from the VQ-VAE run.
  frozen = FrozenVQVAE(vqvae_workdir)
  assert frozen.video_shape == (8, 32, 32, 3) and frozen.latent_shape == (4, 8, 8)


def test_values_and_test_splits_that_cannot_work_are_refused_before_training(
    vqvae_workdir, clip_workdir, tmp_path):
  """Found before the first step, not at the first evaluation or when sampling at the end (the
  test split has 12 episodes: at most 3 batches of 4 clips)."""
  for changes, match in (
      ({'eval.num_clips': 3}, 'eval.num_clips=3 must be at least eval.batch_size=4'),
      ({'samples.num_videos': 64}, "test split of data.name='world_models' .* has [0-3] batches "
                                   'of eval.batch_size clips; 16 are needed'),
      ({'predict.num_clips': 64}, '16 are needed'),
      ({'samples.temperature': 0.0, 'train.num_steps': 0, 'eval.fvd_trials': -1},
       'Config values out of range')):
    config = tiny_config(vqvae_workdir, clip_workdir)
    config.update_from_flattened_dict(changes)
    with pytest.raises(ValueError, match=match) as error:
      prior_lib.train_and_evaluate(config, str(tmp_path))
    assert not os.path.exists(tmp_path / 'checkpoints')
  for line in ('samples.temperature = 0.0: must be > 0', 'train.num_steps = 0: must be >= 1',
               'eval.fvd_trials = -1: must be >= 0'):
    assert line in str(error.value)  # Every value out of range, in one error.


def test_a_vqvae_run_that_did_not_finish_is_refused(vqvae_workdir, clip_workdir, tmp_path):
  unfinished = tmp_path / 'vqvae'
  shutil.copytree(vqvae_workdir, unfinished, ignore=shutil.ignore_patterns('.lock'))
  os.remove(unfinished / 'results.json')  # Killed after its last checkpoint.
  config = tiny_config(str(unfinished), clip_workdir)
  with pytest.raises(ValueError, match='stopped at step 4 .*no results.json.*python -m '
                                       'experiments.train_vqvae.*--config.train.num_steps=4'):
    prior_lib.train_and_evaluate(config, str(tmp_path / 'prior'))
  assert not os.path.exists(tmp_path / 'prior' / 'checkpoints')
  with open(unfinished / 'results.json', 'w') as f:
    json.dump({'step': 2}, f)  # Of a shorter run, resumed with more steps and killed.
  with pytest.raises(ValueError, match='its results.json is from step 2'):
    FrozenVQVAE(str(unfinished))
  # As the error says: run again to its step, the VQ-VAE is only evaluated, and it is finished.
  vqvae.train_and_evaluate(tiny_vqvae_config(clip_workdir), str(unfinished))
  assert FrozenVQVAE(str(unfinished)).step == 4


def test_results_json_is_written_last_and_whole(vqvae_workdir, clip_workdir, tmp_path,
                                                monkeypatch):
  """A run killed while writing results.json leaves none, after every other output."""
  config = tiny_config(vqvae_workdir, clip_workdir)
  config.predict.context_frames = 0  # Samples only: one sampler to compile.

  def dump_then_die(results, f, **kwargs):
    f.write('{"step": ')
    raise KeyboardInterrupt

  monkeypatch.setattr(training, 'json', types.SimpleNamespace(
      dump=dump_then_die, dumps=json.dumps, load=json.load, loads=json.loads))
  with pytest.raises(KeyboardInterrupt):
    prior_lib.train_and_evaluate(config, str(tmp_path))
  assert not os.path.exists(tmp_path / 'results.json')
  for name in ('samples.gif', 'samples.png', 'metrics.jsonl'):
    assert os.path.exists(tmp_path / name)
