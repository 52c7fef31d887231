"""The pipeline's later stages (M, C in the dream, evaluation) on a small encoded dataset."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from conftest import small_config
from experiments import world_models
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models.stages import controller, evaluate, iterate, mdn, vae


def copy_workdir(source, tmp_path_factory, name):
  workdir = str(tmp_path_factory.mktemp(name))
  for part in ('data', 'vae'):
    shutil.copytree(os.path.join(source, part), os.path.join(workdir, part))
  return workdir


def with_generations(config, generations):
  config = config.copy_and_resolve_references()
  config.controller.num_generations = generations
  return config


def test_stages_after_encode_write_results_and_skip_when_complete(latent_workdir,
                                                                   tmp_path_factory):
  config = small_config()
  config.iterative.rounds = 2
  config.iterative.num_episodes = 3
  workdir = copy_workdir(latent_workdir, tmp_path_factory, 'pipeline')
  for stage in ('mdn', 'controller', 'iterate', 'evaluate'):
    world_models.STAGES[stage](config, workdir)

  # Round 1 collected with round 0's C, in the encode stage's format, and trained M and C again.
  collected = episodes_lib.open_episodes(vae.latents_path(os.path.join(workdir, 'round_1')))
  assert len(collected) == 3
  for episode in (collected[i] for i in range(3)):
    length = len(episode['mu'])
    assert episode['mu'].shape == episode['logvar'].shape == (length, config.vae.z_size)
    assert 1 <= length <= config.evaluate.max_steps and episode['dones'][-1]
    assert not episode['dones'][:-1].any() and not episode['terminals'][:-1].any()
    assert episode['terminals'][-1] == (length < config.evaluate.max_steps)
  _, lengths = mdn.load_sequences(workdir, mdn.make_action_features(config), round_index=1)
  assert len(lengths) == len(episodes_lib.open_episodes(vae.latents_path(workdir))) + 3
  assert os.path.exists(controller.checkpoint_dir(workdir, 1))

  with open(os.path.join(workdir, 'results.json')) as f:
    results = json.load(f)
  for name in ('real', 'dream', 'random_policy'):
    scores = results[name]
    assert scores['episodes'] == config.evaluate.num_episodes
    assert 1 <= scores['min'] <= scores['mean'] <= scores['max'] <= config.evaluate.max_steps
  assert results['temperature'] == config.controller.temperature and results['round'] == 1
  assert Image.open(os.path.join(workdir, 'curves.png')).size[0] > 0
  gif = Image.open(os.path.join(workdir, 'dream_vs_real.gif'))
  assert gif.size == (256, 128) and 1 <= gif.n_frames <= config.evaluate.gif_steps
  log = os.path.join(workdir, 'round_1', 'controller', 'metrics.jsonl')
  rows = [json.loads(line) for line in open(log)]
  assert [r['step'] for r in rows if 'mean_real_return' in r] == [2, 4]

  # Reporting keys re-evaluate the trained C instead of refusing the workdir.
  more = config.copy_and_resolve_references()
  more.evaluate.num_episodes = 6
  assert evaluate.evaluate(more, workdir)['real']['episodes'] == 6
  evaluate.evaluate(config, workdir)

  # Complete stages are skipped: nothing is trained or evaluated again.
  before = os.path.getmtime(os.path.join(workdir, 'results.json'))
  assert evaluate.evaluate(config, workdir) == results
  assert os.path.getmtime(os.path.join(workdir, 'results.json')) == before
  assert int(mdn.train_and_evaluate(config, workdir, 1).step) > 0
  theta = controller.train_and_evaluate(config, workdir, 1)
  iterate.run_rounds(config, workdir)
  assert len(open(log).readlines()) == len(rows)
  world = controller.build_world(config, workdir, 1)
  again = controller.restore_controller(config, workdir, world.template, 1)
  for a, b in zip(jax.tree.leaves(theta), jax.tree.leaves(again)):
    np.testing.assert_array_equal(a, b)


def test_stopped_controller_run_resumes_to_the_same_mean(latent_workdir, tmp_path_factory):
  config = small_config()
  straight_dir = copy_workdir(latent_workdir, tmp_path_factory, 'straight')
  mdn.train_and_evaluate(config, straight_dir)
  resumed_dir = copy_workdir(latent_workdir, tmp_path_factory, 'resumed')
  shutil.copytree(os.path.join(straight_dir, 'mdn'), os.path.join(resumed_dir, 'mdn'))

  straight = controller.train_and_evaluate(config, straight_dir)
  controller.train_and_evaluate(with_generations(config, 2), resumed_dir)  # Stops at a checkpoint.
  resumed = controller.train_and_evaluate(config, resumed_dir)
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert any(np.abs(x).sum() > 0 for x in jax.tree.leaves(straight))  # C moved from zero.


def test_controller_trains_in_the_real_environment(latent_workdir, tmp_path_factory):
  config = small_config()
  config.controller.train_in = 'real'
  workdir = copy_workdir(latent_workdir, tmp_path_factory, 'train_real')
  mdn.train_and_evaluate(config, workdir)
  theta = controller.train_and_evaluate(config, workdir)
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'controller', 'metrics.jsonl'))]
  returns = [r['population/mean_return'] for r in rows if 'population/mean_return' in r]
  assert len(returns) == 4 and all(1 <= x <= config.controller.max_steps for x in returns)
  assert any(np.abs(x).sum() > 0 for x in jax.tree.leaves(theta))


def test_controller_stage_errors_name_the_missing_piece(latent_workdir, tmp_path_factory):
  config = small_config()
  workdir = copy_workdir(latent_workdir, tmp_path_factory, 'errors')
  with pytest.raises(FileNotFoundError, match='Run the mdn stage'):
    controller.train_and_evaluate(config, workdir)
  config.controller.eval_every = 3
  with pytest.raises(ValueError, match='controller.eval_every=3'):
    controller.train_and_evaluate(config, workdir)
  config.controller.train_in = 'elsewhere'
  with pytest.raises(ValueError, match="controller.train_in must be 'dream' or 'real'"):
    controller.train_and_evaluate(config, workdir)
  with pytest.raises(FileNotFoundError, match='Run the controller stage'):
    template = {'params': {'linear': {'kernel': np.zeros((32 + 16, 2)), 'bias': np.zeros(2)}}}
    controller.restore_controller(small_config(), workdir, template)
  assert os.path.exists(vae.latents_path(workdir))
