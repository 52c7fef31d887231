import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.videogpt.models.axial_attention import AxialAttention, AxialBlock

B, T, H, W, C, HEADS = 2, 3, 4, 5, 8, 2


def full_attention_on_one_axis(params, x, axis):
  """Naive reference: attention over all T*H*W positions, masked to pairs that differ only along
  `axis`, from the same query/key/value/output weights."""
  flat = x.reshape(B, T * H * W, C)
  q, k, v = (jnp.einsum('bnc,chd->bnhd', flat, params[n]['kernel'])
             for n in ('query', 'key', 'value'))
  logits = jnp.einsum('bnhd,bmhd->bhnm', q, k) / np.sqrt(q.shape[-1])
  coords = np.array(list(itertools.product(range(T), range(H), range(W))))  # raster order
  others = [a for a in range(3) if a != axis - 1]
  same_line = np.all(coords[:, None, others] == coords[None, :, others], axis=-1)
  logits = jnp.where(same_line, logits, -jnp.inf)
  out = jnp.einsum('bhnm,bmhd->bnhd', jax.nn.softmax(logits, axis=-1), v)
  out = jnp.einsum('bnhd,hdc->bnc', out, params['out']['kernel']) + params['out']['bias']
  return out.reshape(B, T, H, W, C)


@pytest.mark.parametrize('axis', [1, 2, 3])
def test_axial_attention_equals_full_attention_restricted_to_the_axis(axis):
  x = jax.random.normal(jax.random.key(0), (B, T, H, W, C))
  layer = AxialAttention(HEADS, axis)
  params = layer.init(jax.random.key(1), x)['params']
  np.testing.assert_allclose(layer.apply({'params': params}, x),
                             full_attention_on_one_axis(params, x, axis), rtol=1e-4, atol=1e-5)


def test_axial_block_sums_three_axes_after_position_embeddings():
  x = jax.random.normal(jax.random.key(2), (B, T, H, W, C))
  block = AxialBlock(HEADS)
  params = block.init(jax.random.key(3), x)['params']
  position = params['position_t'] + params['position_h'] + params['position_w']
  expected = sum(full_attention_on_one_axis(params[f'attention_{n}'], x + position, axis)
                 for axis, n in ((1, 't'), (2, 'h'), (3, 'w')))
  np.testing.assert_allclose(block.apply({'params': params}, x), expected, rtol=1e-4, atol=1e-5)


def test_bad_shape_is_named():
  with pytest.raises(ValueError, match=r'\[B, T, H, W, C\]'):
    AxialAttention(HEADS, 1).init(jax.random.key(0), jnp.zeros((B, H, W, C)))


def test_parameter_layout_matches_the_authors():
  """Per axis: q, k, v C x C without bias, output C x C + C (no position table in the count)."""
  params = AxialAttention(HEADS, 2).init(jax.random.key(0), jnp.zeros((B, T, H, W, C)))
  assert sum(x.size for x in jax.tree.leaves(params)) == 4 * C * C + C
