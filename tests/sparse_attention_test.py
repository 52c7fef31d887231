"""VideoGPT's sparse attention pattern and its two implementations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from wm_jax.videogpt.models import sparse_attention


def _qkv(length, heads=2, dim=8, seed=0):
  keys = jax.random.split(jax.random.PRNGKey(seed), 3)
  return [jax.random.normal(k, (2, length, heads, dim)) for k in keys]


def _reference(q, k, v, mask):
  """softmax(q k^T / sqrt(d) + log mask) v, written out."""
  scores = np.einsum('bqhd,bkhd->bhqk', q, k) / np.sqrt(q.shape[-1])
  scores = np.where(mask, scores, -np.inf)
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  return np.einsum('bhqk,bkhd->bqhd', probs, v)


def test_block_grids_merge_trailing_axes_until_a_block_fits():
  assert sparse_attention.block_grid((4, 16, 16), 32) == (4, 8)  # Two rows per block.
  assert sparse_attention.block_grid((4, 32, 32), 32) == (4, 32)  # One row per block.
  assert sparse_attention.block_grid((8, 64, 64), 32) == (8, 64, 2)  # Half a row.
  assert sparse_attention.block_grid((2, 4, 4), 32) == (1,)  # One block for everything.
  with pytest.raises(ValueError, match='model.block_size'):
    sparse_attention.block_grid((4, 6, 6), 32)


def test_layout_is_local_window_plus_same_position_in_earlier_frames():
  # (4, 16, 16): block r = 8 t + b covers rows 2b, 2b + 1 of frame t.
  layout = sparse_attention.block_layout((4, 16, 16))
  rows = {r: list(np.flatnonzero(layout[r])) for r in (0, 3, 7, 8, 20, 27, 31)}
  assert rows == {0: [0], 3: [0, 1, 2, 3], 7: [3, 4, 5, 6, 7], 8: [0, 4, 5, 6, 7, 8],
                  20: [4, 12, 16, 17, 18, 19, 20], 27: [3, 11, 19, 23, 24, 25, 26, 27],
                  31: [7, 15, 23, 27, 28, 29, 30, 31]}
  # A 3-D block grid strides along time and rows, never along its last axis.
  layout = sparse_attention.block_layout((2, 4, 16), 8)  # grid (2, 4, 2)
  query = np.ravel_multi_index((1, 3, 1), (2, 4, 2))
  seen = {tuple(int(i) for i in np.unravel_index(c, (2, 4, 2))) for c in np.flatnonzero(layout[query])}
  assert {(0, 3, 1), (1, 0, 1), (1, 1, 1)} <= seen and (0, 3, 0) not in seen


def test_token_mask_is_causal_and_sparser_than_dense():
  sparse = sparse_attention.token_mask((4, 16, 16), 'sparse')
  dense = sparse_attention.token_mask((4, 16, 16), 'dense')
  assert not np.triu(sparse, 1).any() and np.array_equal(dense, np.tril(np.ones_like(dense)))
  assert (sparse <= dense).all() and sparse.sum() < 0.4 * dense.sum()
  assert sparse.diagonal().all()


@pytest.mark.parametrize('shape', [(4, 16, 16), (4, 8, 8), (2, 8, 32)])
@pytest.mark.parametrize('pattern', ['sparse', 'dense'])
def test_block_sparse_and_masked_paths_equal_dense_attention_under_the_mask(shape, pattern):
  length = int(np.prod(shape))
  q, k, v = _qkv(length)
  expected = _reference(q, k, v, sparse_attention.token_mask(shape, pattern))
  for implementation in sparse_attention.IMPLEMENTATIONS:
    out = sparse_attention.causal_attention(q, k, v, shape, pattern=pattern,
                                            implementation=implementation)
    np.testing.assert_allclose(out, expected, atol=2e-5, err_msg=implementation)


def test_block_sparse_work_grows_with_the_attended_keys():
  indices, valid = sparse_attention.visible_blocks((8, 32, 32))
  length, block = 8 * 32 * 32, 32
  scores = indices.size * block * block  # Scores the block-sparse path computes.
  assert valid.all(1).any() and scores < 0.1 * length * length


@pytest.mark.parametrize('pattern', ['sparse', 'dense'])
def test_the_samplers_mask_rows_are_the_token_masks_rows(pattern):
  mask = sparse_attention.token_mask((4, 16, 16), pattern)
  for index in (0, 31, 32, 300, 1023):
    row = sparse_attention.mask_row((4, 16, 16), pattern, jnp.int32(index))
    np.testing.assert_array_equal(row, mask[index])


def test_bad_arguments_name_the_config_keys():
  q, k, v = _qkv(256)
  with pytest.raises(ValueError, match='model.attention_impl'):
    sparse_attention.causal_attention(q, k, v, (4, 8, 8), implementation='flash')
  with pytest.raises(ValueError, match='model.attention'):
    sparse_attention.causal_attention(q, k, v, (4, 8, 8), pattern='strided')
  with pytest.raises(ValueError, match='latent grid'):
    sparse_attention.causal_attention(q, k, v, (4, 8, 4))
