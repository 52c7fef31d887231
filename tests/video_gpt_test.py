"""VideoGPT's prior: causality, conditioning, cached sampling, the paper's sizes."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.videogpt.models.video_gpt import ConditionalLayerNorm, VideoGPT, sample_codes

SHAPE = (4, 8, 8)  # 256 codes: a 4 x 2 grid of 32-token blocks.
CODES, CODE_DIM = 32, 8


def _model(**overrides):
  kwargs = dict(latent_shape=SHAPE, num_codes=CODES, width=24, num_heads=2, num_layers=2,
                dropout=0.0, attention_dropout=0.0, condition_dim=6,
                cond_frames=2, resnet_blocks=(1, 1, 1, 1), resnet_widths=(8, 8, 8, 12),
                resnet_stem=8)
  return VideoGPT(**{**kwargs, **overrides})


def _inputs(batch=2, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  codebook = jax.random.normal(keys[0], (CODES, CODE_DIM))
  c = jax.random.normal(keys[1], (batch, SHAPE[0], 6))
  frames = jax.random.uniform(keys[2], (batch, 2, 16, 16, 3)) - 0.5
  return codebook, c, frames


def _params(model, codebook, c, frames):
  codes = jnp.zeros((c.shape[0], *SHAPE), jnp.int32)
  params = model.init(jax.random.PRNGKey(1), codebook[codes], c, frames)['params']
  # The output layer starts at zero (every logit 0): give it weights so outputs differ.
  kernel = params['output_proj']['kernel']
  params['output_proj']['kernel'] = jax.random.normal(jax.random.PRNGKey(2), kernel.shape)
  return params


def _codes(seed, batch=2):
  return jax.random.randint(jax.random.PRNGKey(seed), (batch, *SHAPE), 0, CODES)


def test_initial_loss_is_log_num_codes():
  model = _model()
  codebook, c, frames = _inputs()
  params = model.init(jax.random.PRNGKey(1), codebook[_codes(0)], c, frames)['params']
  logits = model.apply({'params': params}, codebook[_codes(0)], c, frames)
  assert logits.shape == (2, *SHAPE, CODES) and not np.any(logits)


@pytest.mark.parametrize('attention', ['sparse', 'dense'])
@pytest.mark.parametrize('attention_impl', ['masked', 'block_sparse'])
def test_no_future_leakage(attention, attention_impl):
  model = _model(attention=attention, attention_impl=attention_impl)
  codebook, c, frames = _inputs()
  params = _params(model, codebook, c, frames)
  codes = _codes(0)
  logits = model.apply({'params': params}, codebook[codes], c, frames).reshape(2, -1, CODES)
  for i in (0, 37, 130, 255):
    changed = codes.reshape(2, -1).at[:, i + 1:].set(_codes(1).reshape(2, -1)[:, i + 1:])
    changed = changed.at[:, i].set((changed[:, i] + 1) % CODES)  # Position i's own code too.
    out = model.apply({'params': params}, codebook[changed.reshape(codes.shape)], c, frames)
    np.testing.assert_allclose(out.reshape(2, -1, CODES)[:, :i + 1], logits[:, :i + 1],
                               atol=1e-5, err_msg=f'position {i}')
    if i < 255:
      assert not np.allclose(out.reshape(2, -1, CODES)[:, i + 1:], logits[:, i + 1:], atol=1e-3)


def test_per_step_conditions_reach_only_their_own_and_later_steps():
  model = _model(cond_frames=0)
  codebook, c, _ = _inputs()
  params = _params(model, codebook, c, None)
  logits = model.apply({'params': params}, codebook[_codes(0)], c)
  changed = c.at[:, 2].add(1.0)  # The vector of latent step 2 (positions 128..191).
  out = model.apply({'params': params}, codebook[_codes(0)], changed)
  np.testing.assert_allclose(out[:, :2], logits[:, :2], atol=1e-5)
  assert not np.allclose(out[:, 2], logits[:, 2], atol=1e-3)
  assert not np.allclose(out[:, 3], logits[:, 3], atol=1e-3)  # Through attention to step 2.


def test_masked_and_block_sparse_implementations_agree_in_the_model():
  codebook, c, frames = _inputs()
  params = _params(_model(), codebook, c, frames)
  outs = [_model(attention_impl=impl).apply({'params': params}, codebook[_codes(0)], c, frames)
          for impl in ('masked', 'block_sparse')]
  np.testing.assert_allclose(outs[0], outs[1], rtol=1e-5, atol=1e-4)  # Logits ~10.


def test_conditional_layer_norm_with_zero_condition_is_layer_norm():
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 16)) * 3 + 1
  c = jnp.zeros((2, 1, 7))
  norm = ConditionalLayerNorm(conditional=True)
  variables = norm.init(jax.random.PRNGKey(1), x, c)
  plain = nn.LayerNorm(epsilon=1e-5)
  expected = plain.apply(plain.init(jax.random.PRNGKey(2), x), x)
  np.testing.assert_allclose(norm.apply(variables, x, c), expected, atol=1e-6)
  # The gain starts at 1 + 1/sqrt(C) per unit of c (the authors' initialisation).
  ones = norm.apply(variables, x, jnp.ones((2, 1, 7)))
  assert not np.allclose(ones, expected)
  np.testing.assert_allclose(variables['params']['gain']['kernel'], 1 / np.sqrt(7))


def test_cross_attention_changes_the_output_when_the_frames_change():
  model = _model()
  codebook, c, frames = _inputs()
  params = _params(model, codebook, c, frames)
  logits = model.apply({'params': params}, codebook[_codes(0)], c, frames)
  other = model.apply({'params': params}, codebook[_codes(0)], c, frames[::-1])
  assert not np.allclose(logits[0], other[0], atol=1e-3)
  # Every position sees the frames, the first one (before any code) included.
  assert not np.allclose(logits[:, 0, 0, 0], other[:, 0, 0, 0], atol=1e-4)


@pytest.mark.parametrize('attention', ['sparse', 'dense'])
def test_cached_sampling_equals_uncached_recomputation(attention):
  model = _model(attention=attention)
  codebook, c, frames = _inputs()
  params = _params(model, codebook, c, frames)
  prefix = _codes(3).reshape(2, -1)[:, :40]
  kwargs = dict(c=c, frames=frames, prefix=prefix, temperature=0.8, top_k=10)
  cached = sample_codes(model, params, codebook, jax.random.PRNGKey(4), 2, cached=True, **kwargs)
  uncached = sample_codes(model, params, codebook, jax.random.PRNGKey(4), 2, cached=False,
                          **kwargs)
  np.testing.assert_array_equal(cached, uncached)
  np.testing.assert_array_equal(cached.reshape(2, -1)[:, :40], prefix)
  assert len(np.unique(cached)) > 5  # Sampled, not constant.
  other = sample_codes(model, params, codebook, jax.random.PRNGKey(5), 2, cached=True, **kwargs)
  assert not np.array_equal(cached, other)


def test_bad_inputs_name_what_was_expected():
  model = _model()
  codebook, c, frames = _inputs()
  params = _params(model, codebook, c, frames)
  with pytest.raises(ValueError, match='latent_shape'):
    model.apply({'params': params}, codebook[_codes(0)][:, :2], c, frames)
  with pytest.raises(ValueError, match='model.condition_dim'):
    model.apply({'params': params}, codebook[_codes(0)], None, frames)
  with pytest.raises(ValueError, match='conditioned on frames'):
    model.apply({'params': params}, codebook[_codes(0)], c, None)
  with pytest.raises(ValueError, match='model.condition_dim'):  # Sampling without actions.
    sample_codes(model, params, codebook, jax.random.PRNGKey(0), 2, frames=frames)
  with pytest.raises(ValueError, match='temperature'):
    sample_codes(model, params, codebook, jax.random.PRNGKey(0), 2, c=c, frames=frames,
                 temperature=0.0)


def test_paper_moving_mnist_prior_size():
  # Paper (table 9): 8 layers, 4 heads, width D = 192 over 4x16x16 codes of a 512 x 64 codebook.
  # input projection 64 D + start D + position tables (4 + 16 + 16) D / 3
  # + 8 blocks x [q, k, v, out 4 D^2 + D, two LayerNorms 4 D, MLP 8 D^2 + 5 D]
  # + final LayerNorm 2 D + output 512 D
  # = 12,288 + 192 + 2,304 + 8 x 444,288 + 384 + 98,304 = 3,667,776.
  model = VideoGPT((4, 16, 16), 512, width=192, num_heads=4, num_layers=8)
  shapes = jax.eval_shape(model.init, jax.random.PRNGKey(0), jnp.zeros((1, 4, 16, 16, 64)))
  assert sum(int(np.prod(x.shape)) for x in jax.tree.leaves(shapes)) == 3_667_776
