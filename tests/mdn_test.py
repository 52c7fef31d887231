import shutil

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.world_models import Workdir, configs, world
from wm_jax.world_models.models.mdn_rnn import MixtureOutput, action_features
from wm_jax.world_models.stages import mdn


def test_action_inputs():
  actions = jax.numpy.array([0, 1, 2])
  np.testing.assert_array_equal(action_features(actions, 3, 'centered'), [[-1], [0], [1]])
  np.testing.assert_array_equal(action_features(actions, 3), np.eye(3))
  with pytest.raises(ValueError, match='mdn.action_input must be one of'):
    action_features(actions, 3, 'binary')


@pytest.mark.parametrize('name, action_size, count', [
    ('doom_take_cover', 1, 1_678_785),  # One action input: -1 / 0 / 1.
    ('carracing', 3, 422_368)])
def test_paper_configs_build_the_papers_m(name, action_size, count):
  config = configs.get(name)
  model = world.mdn_model(config)
  assert model.action_size == action_size
  params = jax.eval_shape(model.init, jax.random.key(0),
                          jax.numpy.zeros((1, 2, config.vae.model.z_size)),
                          jax.numpy.zeros((1, 2, action_size)))
  assert sum(x.size for x in jax.tree.leaves(params)) == count


def copy_latents(source, tmp_path_factory, name):
  workdir = str(tmp_path_factory.mktemp(name))
  shutil.copytree(Workdir(source).latents(), Workdir(workdir).latents())
  return workdir


def test_epoch_index_packs_shuffled_episodes():
  lengths = np.array([3, 5, 2, 6])
  index = mdn.epoch_index(lengths, num_streams=2, chunk_length=3, seed=0, epoch=0)
  assert index.shape == (2, 2, 3)
  assert len(set(index.ravel())) == 12  # Distinct steps, 12 of the 16.
  again = mdn.epoch_index(lengths, 2, 3, seed=0, epoch=0)
  other = mdn.epoch_index(lengths, 2, 3, seed=0, epoch=1)
  np.testing.assert_array_equal(index, again)
  assert not np.array_equal(index, other)
  with pytest.raises(ValueError, match='mdn.chunk_length'):
    mdn.epoch_index(lengths, num_streams=8, chunk_length=4, seed=0, epoch=0)


def test_sequences_flags(latent_workdir):
  data, lengths = mdn.load_sequences(configs.get('default:tiny'), latent_workdir)
  assert data.actions.shape == (lengths.sum(), 2) and set(np.unique(data.actions)) <= {0.0, 1.0}
  ends = np.cumsum(lengths) - 1
  assert np.all(data.has_next[ends] == 0) and data.has_next.sum() == lengths.sum() - len(lengths)
  assert np.all(data.restarts[np.concatenate([[0], ends[:-1] + 1])] == 1)
  assert data.restarts.sum() == len(lengths)


def test_loss_falls_and_a_resumed_run_matches(latent_workdir, tmp_path_factory, monkeypatch):
  config = configs.get('default:tiny')
  straight_dir = copy_latents(latent_workdir, tmp_path_factory, 'straight')
  first = mdn.train_and_evaluate(_with_epochs(config, 1), straight_dir)
  straight = mdn.train_and_evaluate(config, straight_dir)  # Resumes after epoch 1.
  assert (first['step'], straight['step']) == (1, config.mdn.num_epochs)

  fresh_dir = copy_latents(latent_workdir, tmp_path_factory, 'fresh')
  with monkeypatch.context() as patch:  # Every epoch runs one compiled program.
    patch.setattr(mdn, 'train_epoch', chex.assert_max_traces(mdn.train_epoch, n=1))
    assert mdn.train_and_evaluate(config, fresh_dir) == pytest.approx(straight, rel=1e-4)
  fresh = mdn.restore_params(config, fresh_dir)
  for a, b in zip(jax.tree.leaves(fresh), jax.tree.leaves(mdn.restore_params(config, straight_dir))):
    np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)

  data, lengths = mdn.load_sequences(config, fresh_dir)
  index = mdn.epoch_index(lengths, 4, 8, seed=0, epoch=99)
  losses = []
  initial = mdn.create_train_state(config, jax.random.PRNGKey(0))
  for state in (initial, initial.replace(params=fresh)):
    _, metrics = mdn.train_epoch(state, jax.device_put(data), index, jax.random.key(5), 10.0, 1.0,
                                 16)
    losses.append(float(metrics['nll']))
  assert losses[1] < losses[0] - 0.3, losses

  # mdn.sample_z=False: M learns z = mu, so the epoch's key changes nothing; sampled z, it does.
  def epoch_nll(key, sample_z):
    return float(mdn.train_epoch(initial, jax.device_put(data), index, key, 10.0, 1.0, 16,
                                 sample_z=sample_z)[1]['nll'])
  assert epoch_nll(jax.random.key(1), False) == epoch_nll(jax.random.key(2), False)
  assert epoch_nll(jax.random.key(1), True) != epoch_nll(jax.random.key(2), True)


def test_done_loss_weights_terminal_steps():
  """The paper's restart_factor: terminal steps' BCE x w, so the loss-minimising probability for
  a hazard p is w p / (w p + 1 - p), above 0.5 once p > 1 / (1 + w)."""
  terminals = jnp.array([[0.0, 0.0, 1.0, 0.0, 1.0]])
  logits = jnp.array([[-2.0, 0.5, -1.0, 3.0, 0.0]])
  mixture = MixtureOutput(logits=jnp.zeros((1, 5, 1, 1)), means=jnp.zeros((1, 5, 1, 1)),
                          log_stds=jnp.zeros((1, 5, 1, 1)), done_logits=logits, rewards=None)
  batch = {'z': jnp.zeros((1, 5, 1)), 'z_next': jnp.zeros((1, 5, 1)), 'actions': None,
           'restarts': None, 'has_next': jnp.ones((1, 5)), 'terminals': terminals}
  loss = lambda w, logit=logits: mdn.chunk_loss(
      None, None, batch, lambda *args: (None, mixture._replace(done_logits=logit)), 2.0, w)[0]
  p = jax.nn.sigmoid(logits)
  bce = -(terminals * jnp.log(p) + (1 - terminals) * jnp.log(1 - p))
  expected = loss(1.0) + 2.0 * jnp.mean(9.0 * terminals * bce)
  np.testing.assert_allclose(loss(10.0), expected, rtol=1e-6)
  # Two deaths in five steps (p = 0.4) with w = 10: the minimiser is 4 / 4.6.
  best = jnp.linspace(-3.0, 5.0, 8001)[jnp.argmin(jax.vmap(
      lambda c: loss(10.0, jnp.full((1, 5), c)))(jnp.linspace(-3.0, 5.0, 8001)))]
  np.testing.assert_allclose(jax.nn.sigmoid(best), 4.0 / 4.6, atol=1e-3)


def _with_epochs(config, epochs):
  config = config.copy_and_resolve_references()
  config.mdn.num_epochs = epochs
  return config


def test_done_detection_counts_fires_at_deaths_and_elsewhere(latent_workdir):
  config = configs.get('default:tiny')
  data, lengths = mdn.load_sequences(config, latent_workdir)
  model = world.mdn_model(config)
  params = mdn.create_train_state(config, jax.random.PRNGKey(0)).params
  # A plain loop over single unpadded episodes; batches of 5 leave a padded remainder.
  starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
  steps = [slice(start, start + length) for start, length in zip(starts, lengths)]
  logits = [np.asarray(model.apply({'params': params}, data.mu[None, s], data.actions[None, s],
                                   data.restarts[None, s])[1].done_logits[0]) for s in steps]
  # Splits the untrained head's logits in their middle half, at the widest gap, so that the
  # batched pass (equal to ~1e-6) fires where the loop does.
  middle = np.sort(np.concatenate(logits))[len(data.mu) // 4: 3 * len(data.mu) // 4]
  widest = int(np.argmax(np.diff(middle)))
  threshold = float(middle[widest: widest + 2].mean())
  deaths = recalled = fired = others = 0
  for s, logit in zip(steps, logits):
    fires, terminal = logit > threshold, data.terminals[s] > 0
    deaths += terminal[-1]
    recalled += terminal[-1] and fires[-1]
    fired += np.sum(fires & ~terminal)
    others += np.sum(~terminal)
  outputs = mdn.head_outputs(model, params, data, lengths, batch_size=5)
  assert set(outputs) == {'done_logits'}  # The heads this M has.
  np.testing.assert_allclose(outputs['done_logits'], np.concatenate(logits), atol=1e-5)
  result = mdn.done_detection(outputs['done_logits'], data, lengths, threshold)
  assert result['deaths'] == deaths > 0
  assert result['death_recall'] == pytest.approx(recalled / deaths)
  assert result['false_fire_rate'] == pytest.approx(fired / others)
  assert 0.2 < result['false_fire_rate'] < 0.8

  for bias, expected in ((50.0, 1.0), (-50.0, 0.0)):
    head = dict(params['rnn']['head'])
    head['bias'] = head['bias'].at[-1].set(bias)  # The done logit is the head's last output.
    shifted = {**params, 'rnn': {**params['rnn'], 'head': head}}
    result = mdn.done_detection(mdn.head_outputs(model, shifted, data, lengths)['done_logits'],
                                data, lengths)
    assert result['death_recall'] == result['false_fire_rate'] == expected


def test_reward_prediction_sums_the_heads_predictions_over_each_episode(latent_workdir):
  config = configs.get('default:tiny')
  config.mdn.model.predict_reward = True
  data, lengths = mdn.load_sequences(config, latent_workdir)
  model = world.mdn_model(config)
  params = mdn.create_train_state(config, jax.random.PRNGKey(0)).params
  head = dict(params['rnn']['head'])  # The reward is the head's last output.
  head['kernel'] = head['kernel'].at[:, -1].set(0.0)
  head['bias'] = head['bias'].at[-1].set(0.25)
  constant = {**params, 'rnn': {**params['rnn'], 'head': head}}
  outputs = mdn.head_outputs(model, constant, data, lengths, batch_size=5)
  assert set(outputs) == {'done_logits', 'rewards'}
  result = mdn.reward_prediction(outputs['rewards'], data, lengths)
  assert result['predicted_return'] == pytest.approx(0.25 * lengths.mean())
  assert result['real_return'] == pytest.approx(lengths.mean())  # CartPole: +1 per step.
  assert result['return_correlation'] == pytest.approx(1.0)
  assert result['reward_rmse'] == pytest.approx(0.75)
