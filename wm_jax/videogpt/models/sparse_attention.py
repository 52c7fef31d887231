"""Causal attention over a flattened T'xH'xW' code grid: VideoGPT's sparse pattern or dense.

VideoGPT's prior uses the Sparse Transformer's strided pattern on blocks of `block_size` (32)
consecutive raster-order tokens:
- the block grid is the latent grid with its trailing axes merged until a block fits: the
  product of the last axes first exceeds `block_size` at axis i, so (4, 16, 16) -> (4, 8)
  (a block is two rows of a frame), (4, 32, 32) -> (4, 32), (8, 64, 64) -> (8, 64, 2);
- local: block r sees blocks r - num_local_blocks .. r in raster order (across frames);
- strided: block r sees every earlier block that differs from it in one coordinate of the
  block grid, for every grid axis but the last (the same block position in earlier frames, and
  for 3-D grids in earlier rows);
- tokens: a query sees the keys of its visible blocks, causally (key position <= query).
`pattern='dense'` is plain causal attention.

Two implementations give the same numbers (tests/sparse_attention_test.py):
- 'masked': every query scores all L keys and the mask removes the invisible ones (L^2 work;
  what the authors' sampler does, and what the KV-cached sampler does with one `mask_row`);
- 'block_sparse': each query block gathers only its visible key blocks (at most `max_visible`
  per row) and attends within them, so the work grows with the attended positions:
  L * max_visible * block_size scores instead of L^2.
"""

from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import jax
import jax.numpy as jnp
import numpy as np

PATTERNS = ('sparse', 'dense')
IMPLEMENTATIONS = ('masked', 'block_sparse')


def block_grid(latent_shape: Sequence[int], block_size: int) -> tuple[int, ...]:
  """The grid of `block_size`-token blocks over the raster-ordered latent grid."""
  length = math.prod(latent_shape)
  if length % block_size:
    raise ValueError(f'Sparse attention needs the {length} latent tokens of {tuple(latent_shape)} '
                     f'to split into blocks of model.block_size={block_size}.')
  product = 1
  for axis in reversed(range(len(latent_shape))):
    product *= latent_shape[axis]
    if product > block_size:
      if product % block_size:
        raise ValueError(f'The trailing latent axes {tuple(latent_shape[axis:])} do not split '
                         f'into blocks of model.block_size={block_size}.')
      return (*latent_shape[:axis], product // block_size)
  return (length // block_size,)


@functools.lru_cache(maxsize=None)
def block_layout(latent_shape: tuple[int, ...], block_size: int = 32,
                 num_local_blocks: int = 4) -> np.ndarray:
  """bool [n, n]: under the sparse pattern, query block r sees key block c (c <= r)."""
  grid = block_grid(latent_shape, block_size)
  n = math.prod(grid)
  rows, cols = np.arange(n)[:, None], np.arange(n)[None, :]
  local = rows - cols <= num_local_blocks
  coords = np.stack(np.unravel_index(np.arange(n), grid), axis=-1)  # [n, len(grid)]
  same = coords[:, None, :] == coords[None, :, :]  # [n, n, len(grid)]
  strided = np.zeros((n, n), bool)
  for axis in range(len(grid) - 1):  # Every block-grid axis but the last.
    strided |= np.delete(same, axis, axis=-1).all(-1)
  return (cols <= rows) & (local | strided)


def check_pattern(pattern: str) -> None:
  if pattern not in PATTERNS:
    raise ValueError(f'Unknown model.attention {pattern!r}; expected one of {PATTERNS}.')


@functools.lru_cache(maxsize=None)
def token_mask(latent_shape: tuple[int, ...], pattern: str, block_size: int = 32,
               num_local_blocks: int = 4) -> np.ndarray:
  """bool [L, L]: query i may attend to key j (causal within the visible blocks)."""
  check_pattern(pattern)
  causal = np.tril(np.ones((math.prod(latent_shape),) * 2, bool))
  if pattern == 'dense':
    return causal
  layout = block_layout(latent_shape, block_size, num_local_blocks)
  return np.kron(layout, np.ones((block_size, block_size), bool)) & causal


@functools.lru_cache(maxsize=None)
def visible_blocks(latent_shape: tuple[int, ...], block_size: int = 32,
                   num_local_blocks: int = 4) -> tuple[np.ndarray, np.ndarray]:
  """Per query block, its visible key blocks padded to the longest row: (indices int32 [n, m],
  valid bool [n, m]); padding repeats block 0 and is marked invalid."""
  layout = block_layout(latent_shape, block_size, num_local_blocks)
  m = int(layout.sum(1).max())
  indices = np.zeros((len(layout), m), np.int32)
  valid = np.zeros((len(layout), m), bool)
  for r, row in enumerate(layout):
    cols = np.flatnonzero(row)
    indices[r, :len(cols)], valid[r, :len(cols)] = cols, True
  return indices, valid


def masked_attention(q: jax.Array, k: jax.Array, v: jax.Array, mask: jax.Array | None,
                     dropout: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
  """softmax(q k^T / sqrt(d) where mask) v for q [B, Q, h, d], k [B, K, h, d], v [B, K, h, dv],
  mask (None: all keys) broadcastable to [B, h, Q, K]; `dropout` acts on the probabilities.
  Every query must see at least one key. The softmax runs in float32 whatever q's dtype."""
  scores = jnp.einsum('bqhd,bkhd->bhqk', q, k).astype(jnp.float32) / np.sqrt(q.shape[-1])
  if mask is not None:
    scores = jnp.where(mask, scores, jnp.finfo(scores.dtype).min)
  probs = jax.nn.softmax(scores, axis=-1)
  if dropout is not None:
    probs = dropout(probs)
  return jnp.einsum('bhqk,bkhd->bqhd', probs.astype(v.dtype), v)


def mask_row(latent_shape: tuple[int, ...], pattern: str, index: jax.Array, block_size: int = 32,
             num_local_blocks: int = 4) -> jax.Array:
  """Row `index` of `token_mask` [L], built from the block layout on device (the sampler's
  mask for one position, without an [L, L] constant)."""
  check_pattern(pattern)
  positions = jnp.arange(math.prod(latent_shape))
  causal = positions <= index
  if pattern == 'dense':
    return causal
  layout = jnp.asarray(block_layout(latent_shape, block_size, num_local_blocks))
  return jnp.repeat(layout[index // block_size], block_size) & causal


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, latent_shape: Sequence[int], *,
                     pattern: str = 'sparse', implementation: str = 'masked',
                     block_size: int = 32, num_local_blocks: int = 4,
                     dropout: Callable[[jax.Array], jax.Array] | None = None) -> jax.Array:
  """Causal self-attention over the flattened grid: q, k [B, L, h, d], v [B, L, h, dv] ->
  [B, L, h, dv], with L = prod(latent_shape) in raster order."""
  latent_shape = tuple(latent_shape)
  batch, length, heads, _ = q.shape
  if length != math.prod(latent_shape):
    raise ValueError(f'Attention got {length} tokens; the latent grid {latent_shape} has '
                     f'{math.prod(latent_shape)}.')
  if implementation == 'masked':
    mask = token_mask(latent_shape, pattern, block_size, num_local_blocks)
    return masked_attention(q, k, v, jnp.asarray(mask), dropout)
  if implementation != 'block_sparse':
    raise ValueError(f'Unknown model.attention_impl {implementation!r}; expected one of '
                     f'{IMPLEMENTATIONS}.')
  check_pattern(pattern)
  if pattern == 'dense':  # One block holding every token: nothing to gather.
    block_size = length
    indices, valid = np.zeros((1, 1), np.int32), np.ones((1, 1), bool)
  else:
    indices, valid = visible_blocks(latent_shape, block_size, num_local_blocks)
  n, m = indices.shape
  # Query blocks join the batch axis: [B * n, block, h, d] against [B * n, m * block, h, d].
  blocks = lambda x: x.reshape(batch, n, block_size, *x.shape[2:])
  gather = lambda x: blocks(x)[:, indices].reshape(batch * n, m * block_size, *x.shape[2:])
  # Key slot s of query block r holds token indices[r, s // block_size] * block_size + s % block_size.
  key_pos = (indices[:, :, None] * block_size + np.arange(block_size)).reshape(n, m * block_size)
  query_pos = np.arange(n * block_size).reshape(n, block_size)
  mask = (np.repeat(valid, block_size, axis=1)[:, None, :]
          & (key_pos[:, None, :] <= query_pos[:, :, None]))  # [n, block, m * block]
  mask = jnp.broadcast_to(jnp.asarray(mask)[None, :, None], (batch, n, 1, *mask.shape[1:]))
  out = masked_attention(blocks(q).reshape(batch * n, block_size, *q.shape[2:]), gather(k),
                         gather(v), mask.reshape(batch * n, 1, *mask.shape[3:]), dropout)
  return out.reshape(batch, length, heads, v.shape[-1])
