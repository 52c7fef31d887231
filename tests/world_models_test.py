"""The pipeline's later stages (M, C in the dream, evaluation) on a small encoded dataset."""

import json
import os
import shutil

import jax
import numpy as np
import pytest
from PIL import Image

from wm_jax import world_models
from wm_jax.data import episodes as episodes_lib
from wm_jax.world_models import Workdir, configs
from wm_jax.world_models.stages import controller, evaluate, iterate, mdn


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
  config = configs.get('default:tiny')
  config.iterative.rounds = 2
  paths = Workdir(copy_workdir(latent_workdir, tmp_path_factory, 'pipeline'))
  workdir = paths.root
  returned = world_models.run(config, workdir, ['mdn', 'controller', 'iterate', 'evaluate'])
  assert returned['mdn']['step'] == config.mdn.num_epochs
  assert returned['controller']['step'] == config.controller.num_generations
  assert returned['iterate']['round_1']['collect'] == {'episodes': 3}

  # Round 1 collected with round 0's C, in the encode stage's format, and trained M and C again.
  collected = episodes_lib.open_episodes(paths.latents(1))
  assert len(collected) == 3
  for episode in (collected[i] for i in range(3)):
    length = len(episode['mu'])
    assert episode['mu'].shape == episode['logvar'].shape == (length, config.vae.model.z_size)
    assert 1 <= length <= config.env.max_steps and episode['dones'][-1]
    assert not episode['dones'][:-1].any() and not episode['terminals'][:-1].any()
    assert episode['terminals'][-1] == (length < config.env.max_steps)
  _, lengths = mdn.load_sequences(config, workdir, round_index=1)
  assert len(lengths) == len(episodes_lib.open_episodes(paths.latents())) + 3
  assert os.path.exists(paths.checkpoints('controller', 1))

  with open(paths.results) as f:
    results = json.load(f)
  assert {k: v for k, v in returned['evaluate'].items() if k != 'seconds'} == results
  for name in ('real', 'dream', 'random_policy'):
    scores = results[name]
    assert scores['episodes'] == config.evaluate.num_episodes
    assert 1 <= scores['min'] <= scores['mean'] <= scores['max'] <= config.env.max_steps
  assert results['temperature'] == config.dream.temperature and results['round'] == 1
  # M's heads over C's real episodes: CartPole pays 1 per step, so they hold return x episodes
  # steps; and an episode that ends before the cap ended by a death.
  on_real = results['m_on_real_episodes']
  real = results['real']
  assert on_real['episodes'] == real['episodes']
  assert on_real['steps'] == pytest.approx(real['mean'] * real['episodes'])
  assert on_real['deaths'] == real['episodes'] if real['max'] < config.env.max_steps else (
      on_real['deaths'] < real['episodes'])
  # The default M has a done head and no reward head.
  assert set(on_real) == {'episodes', 'steps', 'deaths', 'death_recall', 'false_fire_rate'}
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
  assert mdn.train_and_evaluate(config, workdir, 1)['step'] == config.mdn.num_epochs
  assert iterate.run_rounds(config, workdir) == {
      k: v for k, v in returned['iterate'].items() if k != 'seconds'}
  assert len(open(log).readlines()) == len(rows)
  again = world_models.run(config, workdir)  # Every stage, each finding its output complete.
  assert list(again) == list(world_models.STAGES) and again['evaluate']['real'] == results['real']
  assert len(open(log).readlines()) == len(rows)


def test_run_checks_the_config_and_the_stages_before_writing(tmp_path):
  config = configs.get('default:tiny')
  config.unlock()
  config.mdn.hidden_size = 8
  with pytest.raises(ValueError, match=r"mdn\.hidden_size \(did you mean 'mdn\.model\.hidden_size'"):
    world_models.run(config, str(tmp_path))
  with pytest.raises(ValueError, match=r"Unknown stages \['train'\]"):
    world_models.run(configs.get('default:tiny'), str(tmp_path), ['train'])
  config = configs.get('default:tiny')
  config.controller.eval_every = 3
  with pytest.raises(ValueError, match='controller.eval_every=3'):
    world_models.run(config, str(tmp_path))
  assert not os.listdir(tmp_path)


def test_stopped_controller_run_resumes_to_the_same_mean(latent_workdir, tmp_path_factory):
  config = configs.get('default:tiny')
  straight_dir = copy_workdir(latent_workdir, tmp_path_factory, 'straight')
  mdn.train_and_evaluate(config, straight_dir)
  resumed_dir = copy_workdir(latent_workdir, tmp_path_factory, 'resumed')
  shutil.copytree(os.path.join(straight_dir, 'mdn'), os.path.join(resumed_dir, 'mdn'))

  def trained_controller(config, workdir):
    controller.train_and_evaluate(config, workdir)
    template = controller.load_world(config, workdir).template
    return controller.restore_controller(config, workdir, template)

  straight = trained_controller(config, straight_dir)
  controller.train_and_evaluate(with_generations(config, 2), resumed_dir)  # Stops at a checkpoint.
  resumed = trained_controller(config, resumed_dir)
  for a, b in zip(jax.tree.leaves(straight), jax.tree.leaves(resumed)):
    np.testing.assert_array_equal(a, b)
  assert any(np.abs(x).sum() > 0 for x in jax.tree.leaves(straight))  # C moved from zero.


def test_controller_trains_in_the_real_environment(latent_workdir, tmp_path_factory):
  config = configs.get('default:tiny')
  config.controller.train_in = 'real'
  workdir = copy_workdir(latent_workdir, tmp_path_factory, 'train_real')
  mdn.train_and_evaluate(config, workdir)
  controller.train_and_evaluate(config, workdir)
  rows = [json.loads(line) for line in open(os.path.join(workdir, 'controller', 'metrics.jsonl'))]
  returns = [r['population/mean_return'] for r in rows if 'population/mean_return' in r]
  assert len(returns) == 4 and all(1 <= x <= config.controller.max_steps for x in returns)
  theta = controller.restore_controller(config, workdir, controller.load_world(config, workdir).template)
  assert any(np.abs(x).sum() > 0 for x in jax.tree.leaves(theta))


def test_controller_stage_errors_name_the_missing_piece(latent_workdir, tmp_path_factory):
  config = configs.get('default:tiny')
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
    controller.restore_controller(configs.get('default:tiny'), workdir, template)
  assert os.path.exists(Workdir(workdir).latents())
