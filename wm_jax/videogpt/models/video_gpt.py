"""VideoGPT's prior (Yan et al., 2021, section 3.2): a GPT over the VQ-VAE's code grid.

Codes [B, T', H', W'] are modelled in raster order (t, then h, then w fastest), L = T'H'W':
- input: the frozen codebook vectors of the codes [B, T', H', W', E] -> linear E -> width (no
  bias), shifted right by one position with a learned start vector, plus per-axis position
  embeddings (position_embedding.py);
- `num_layers` pre-LayerNorm blocks: x += drop(self-attention(LN(x))), causal, VideoGPT's sparse
  pattern or dense (sparse_attention.py); x += drop(cross-attention(LN(x), context)) when
  conditioned on frames (context = FrameEncoder tokens); x += drop(MLP(LN(x))), MLP width -> 4
  width -> width with GELU x * sigmoid(1.702 x);
- final LayerNorm, then linear width -> num_codes (no bias, zero-initialised: the first loss is
  ln(num_codes)).
With a conditioning vector c (a class, or one action vector per latent time step), every
LayerNorm is conditional: gain 1 + W_g c, bias W_b c.

Initialisation follows the authors' code: q, k, v without bias, N(0, 1/fan_in); attention output
N(0, 1/(width * num_layers)) with bias; MLP and conditional-LN bias as PyTorch's Linear
(U(+-1/sqrt(fan_in))); W_g constant 1/sqrt(C). One deviation: LayerNorm adds its epsilon to the
variance (the authors add it to 1/sigma).

`__call__` computes the logits of all positions at once (training, teacher forcing);
`init_cache` + `decode` compute one position at a time from a key/value cache, an explicit
pytree carried through the sampling loop.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from wm_jax.videogpt.models import sparse_attention
from wm_jax.videogpt.models.frame_encoder import FrameEncoder
from wm_jax.videogpt.models.position_embedding import AxisPositionEmbedding


def torch_linear_init(fan_in: int):
  """PyTorch's default Linear initialisation, U(-1/sqrt(fan_in), 1/sqrt(fan_in)), for kernels
  and biases alike."""
  bound = 1.0 / math.sqrt(fan_in)
  return lambda key, shape, dtype=jnp.float32: jax.random.uniform(key, shape, dtype, -bound, bound)


class ConditionalLayerNorm(nn.Module):
  """LayerNorm over channels. Without c: learned gain and bias. With c [..., C] (broadcast
  against x's leading axes): gain 1 + W_g c, bias W_b c."""
  conditional: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array, c: jax.Array | None = None) -> jax.Array:
    if not self.conditional:
      return nn.LayerNorm(epsilon=1e-5, dtype=self.dtype)(x)
    normed = nn.LayerNorm(epsilon=1e-5, use_scale=False, use_bias=False, dtype=self.dtype)(x)
    features, dim = x.shape[-1], c.shape[-1]
    gain = nn.Dense(features, use_bias=False, dtype=self.dtype, name='gain',
                    kernel_init=nn.initializers.constant(1.0 / math.sqrt(dim)))(c)
    bias = nn.Dense(features, use_bias=False, dtype=self.dtype, name='bias',
                    kernel_init=torch_linear_init(dim))(c)
    return normed * (1.0 + gain) + bias


class Attention(nn.Module):
  """Multi-head attention with the authors' projections. Self-attention (context_dim=None):
  causal over the latent grid, with a key/value cache for decoding. Cross-attention: every
  query sees all context tokens; values and the output projection keep the context width."""
  width: int
  num_heads: int
  num_layers: int
  latent_shape: Sequence[int]
  context_dim: int | None = None
  pattern: str = 'sparse'
  implementation: str = 'masked'
  block_size: int = 32
  num_local_blocks: int = 4
  dropout: float = 0.0  # On the attention probabilities (the authors': dense self-attention only).
  dtype: Any = jnp.float32

  def setup(self):
    kv_dim = self.context_dim or self.width
    value_dim = kv_dim // self.num_heads
    if self.width % self.num_heads or kv_dim % self.num_heads:
      raise ValueError(f'model.num_heads={self.num_heads} must divide the width {self.width} '
                       f'and the attended width {kv_dim}.')
    head = (self.num_heads, self.width // self.num_heads)
    normal = lambda fan_in: nn.initializers.normal(1.0 / math.sqrt(fan_in))
    self.query = nn.DenseGeneral(head, use_bias=False, kernel_init=normal(self.width),
                                 dtype=self.dtype)
    self.key = nn.DenseGeneral(head, use_bias=False, kernel_init=normal(kv_dim), dtype=self.dtype)
    self.value = nn.DenseGeneral((self.num_heads, value_dim), use_bias=False,
                                 kernel_init=normal(kv_dim), dtype=self.dtype)
    self.out = nn.DenseGeneral(self.width, axis=(-2, -1), bias_init=torch_linear_init(kv_dim),
                               kernel_init=normal(self.width * self.num_layers), dtype=self.dtype)
    self.attention_dropout = nn.Dropout(self.dropout)

  def _probability_dropout(self, train: bool):
    if train and self.dropout > 0:
      return lambda probs: self.attention_dropout(probs, deterministic=False)
    return None

  def __call__(self, x: jax.Array, context: jax.Array | None = None,
               train: bool = False) -> jax.Array:
    """x [B, L, width] (context [B, S, context_dim] for cross-attention) -> [B, L, width]."""
    q = self.query(x)
    if self.context_dim:
      out = sparse_attention.masked_attention(q, self.key(context), self.value(context), None,
                                              self._probability_dropout(train))
    else:
      out = sparse_attention.causal_attention(
          q, self.key(x), self.value(x), self.latent_shape, pattern=self.pattern,
          implementation=self.implementation, block_size=self.block_size,
          num_local_blocks=self.num_local_blocks, dropout=self._probability_dropout(train))
    return self.out(out)

  def init_cache(self, batch_size: int, context: jax.Array | None = None) -> dict[str, jax.Array]:
    """The decoding cache {'key', 'value'}: zeros for all L positions [B, L, h, d]
    (self-attention) or the context's keys and values (cross-attention)."""
    if self.context_dim:
      return {'key': self.key(context), 'value': self.value(context)}
    heads = self.num_heads
    shape = (batch_size, math.prod(self.latent_shape), heads, self.width // heads)
    return {'key': jnp.zeros(shape, self.dtype), 'value': jnp.zeros(shape, self.dtype)}

  def decode(self, x: jax.Array, index: jax.Array,
             cache: dict[str, jax.Array]) -> tuple[jax.Array, dict[str, jax.Array]]:
    """x [B, 1, width] at raster position `index` -> ([B, 1, width], cache); self-attention
    writes its key/value at `index` and reads positions <= index (under the pattern's mask)."""
    q = self.query(x)
    if self.context_dim:
      return self.out(sparse_attention.masked_attention(q, cache['key'], cache['value'],
                                                        None)), cache
    cache = {name: jax.lax.dynamic_update_slice_in_dim(cache[name], projection(x), index, axis=1)
             for name, projection in (('key', self.key), ('value', self.value))}
    row = sparse_attention.mask_row(tuple(self.latent_shape), self.pattern, index,
                                    self.block_size, self.num_local_blocks)
    out = sparse_attention.masked_attention(q, cache['key'], cache['value'], row)
    return self.out(out), cache


class Block(nn.Module):
  """Pre-LN transformer block: self-attention, cross-attention (with a context), MLP."""
  width: int
  num_heads: int
  num_layers: int
  latent_shape: Sequence[int]
  context_dim: int | None
  conditional: bool
  pattern: str
  implementation: str
  block_size: int
  num_local_blocks: int
  dropout: float
  attention_dropout: float
  mlp_ratio: int = 4
  dtype: Any = jnp.float32

  def setup(self):
    attention = dict(width=self.width, num_heads=self.num_heads, num_layers=self.num_layers,
                     latent_shape=self.latent_shape, dtype=self.dtype)
    # The authors drop attention probabilities in dense self-attention only.
    self.self_attention = Attention(
        **attention, pattern=self.pattern, implementation=self.implementation,
        block_size=self.block_size, num_local_blocks=self.num_local_blocks,
        dropout=self.attention_dropout if self.pattern == 'dense' else 0.0)
    self.norm_self = ConditionalLayerNorm(self.conditional, self.dtype)
    if self.context_dim:
      self.cross_attention = Attention(**attention, context_dim=self.context_dim)
      self.norm_cross = ConditionalLayerNorm(self.conditional, self.dtype)
    self.norm_mlp = ConditionalLayerNorm(self.conditional, self.dtype)
    hidden = self.mlp_ratio * self.width
    self.mlp_in = nn.Dense(hidden, kernel_init=torch_linear_init(self.width),
                           bias_init=torch_linear_init(self.width), dtype=self.dtype)
    self.mlp_out = nn.Dense(self.width, kernel_init=torch_linear_init(hidden),
                            bias_init=torch_linear_init(hidden), dtype=self.dtype)
    self.residual_dropout = nn.Dropout(self.dropout)

  def _mlp(self, x):
    h = self.mlp_in(x)
    return self.mlp_out(h * jax.nn.sigmoid(1.702 * h))

  def __call__(self, x, c, context, train: bool):
    drop = lambda y: self.residual_dropout(y, deterministic=not train)
    x = x + drop(self.self_attention(self.norm_self(x, c), train=train))
    if self.context_dim:
      x = x + drop(self.cross_attention(self.norm_cross(x, c), context, train=train))
    return x + drop(self._mlp(self.norm_mlp(x, c)))

  def init_cache(self, batch_size: int, context: jax.Array | None) -> dict[str, dict]:
    cache = {'self': self.self_attention.init_cache(batch_size)}
    if self.context_dim:
      cache['cross'] = self.cross_attention.init_cache(batch_size, context)
    return cache

  def decode(self, x, c, index, cache):
    out, self_cache = self.self_attention.decode(self.norm_self(x, c), index, cache['self'])
    x = x + out
    if self.context_dim:
      x = x + self.cross_attention.decode(self.norm_cross(x, c), index, cache['cross'])[0]
    return x + self._mlp(self.norm_mlp(x, c)), {**cache, 'self': self_cache}


class VideoGPT(nn.Module):
  """The prior: codebook vectors of codes [B, T', H', W', E] -> next-code logits [..., num_codes].

  condition_dim: size of the conditional-LayerNorm vector c (0: none); c is [B, C] (a class)
  or [B, T', C] (one vector per latent time step, e.g. the actions of its frames).
  cond_frames: conditioning frames [B, cond_frames, H, W, C] cross-attended through a 3D ResNet
  (`FrameEncoder(resnet_blocks, resnet_widths, resnet_stem)`); 0: none.
  """
  latent_shape: Sequence[int]
  num_codes: int
  width: int = 192
  num_heads: int = 4
  num_layers: int = 8
  mlp_ratio: int = 4
  dropout: float = 0.2
  attention_dropout: float = 0.3
  attention: str = 'sparse'  # or 'dense'
  attention_impl: str = 'masked'  # or 'block_sparse' (same numbers, work ~ attended keys)
  block_size: int = 32
  num_local_blocks: int = 4
  position_embedding: str = 'concat'  # or 'sum' (position_embedding.py)
  condition_dim: int = 0
  cond_frames: int = 0
  resnet_blocks: Sequence[int] = (2, 2, 2, 2)  # ResNet-18; ResNet-34: (3, 4, 6, 3).
  resnet_widths: Sequence[int] = (64, 128, 256, 240)
  resnet_stem: int = 64
  # Compute dtype ('bfloat16': mixed precision). Parameters, LayerNorm statistics and the
  # softmax stay float32; the logits are cast to float32.
  dtype: Any = jnp.float32

  def setup(self):
    self.input_proj = nn.Dense(self.width, use_bias=False, dtype=self.dtype,
                               kernel_init=nn.initializers.normal(0.02))
    self.start = self.param('start', nn.initializers.normal(0.02), (self.width,))
    self.positions = AxisPositionEmbedding(self.latent_shape, self.width,
                                           self.position_embedding)
    self.frame_encoder = FrameEncoder(self.resnet_blocks, self.resnet_widths, self.resnet_stem,
                                      self.dtype) if self.cond_frames else None
    self.blocks = [Block(width=self.width, num_heads=self.num_heads, num_layers=self.num_layers,
                         latent_shape=self.latent_shape,
                         context_dim=self.resnet_widths[-1] if self.cond_frames else None,
                         conditional=self.condition_dim > 0, pattern=self.attention,
                         implementation=self.attention_impl, block_size=self.block_size,
                         num_local_blocks=self.num_local_blocks, dropout=self.dropout,
                         attention_dropout=self.attention_dropout, mlp_ratio=self.mlp_ratio,
                         dtype=self.dtype, name=f'block{i}')
                   for i in range(self.num_layers)]
    self.final_norm = ConditionalLayerNorm(self.condition_dim > 0, self.dtype)
    self.output_proj = nn.Dense(self.num_codes, use_bias=False, dtype=self.dtype,
                                kernel_init=nn.initializers.zeros)

  def _check_condition(self, batch: int, c: jax.Array | None) -> None:
    if self.condition_dim and (c is None or c.shape[0] != batch or c.ndim not in (2, 3)
                               or c.shape[-1] != self.condition_dim
                               or (c.ndim == 3 and c.shape[1] != self.latent_shape[0])):
      raise ValueError(
          f'The prior is conditioned on vectors of size model.condition_dim={self.condition_dim}: '
          f'pass c [{batch}, {self.condition_dim}] or [{batch}, {self.latent_shape[0]}, '
          f'{self.condition_dim}], got {None if c is None else c.shape}.')
    if not self.condition_dim and c is not None:
      raise ValueError('Got a conditioning vector c, but model.condition_dim is 0.')

  def _check_frames(self, batch: int, frames: jax.Array | None) -> None:
    if self.cond_frames and (frames is None or frames.shape[:2] != (batch, self.cond_frames)):
      raise ValueError(f'The prior is conditioned on frames: pass frames [{batch}, '
                       f'{self.cond_frames} (model.cond_frames), H, W, C], got '
                       f'{None if frames is None else frames.shape}.')
    if not self.cond_frames and frames is not None:
      raise ValueError('Got conditioning frames, but model.cond_frames is 0.')

  def _per_token(self, c: jax.Array | None) -> jax.Array | None:
    """c [B, C] -> [B, 1, C]; c [B, T', C] -> [B, L, C] (each step's vector on its tokens)."""
    if c is None:
      return None
    if c.ndim == 2:
      return c[:, None]
    return jnp.repeat(c, math.prod(self.latent_shape[1:]), axis=1)

  def __call__(self, embeddings: jax.Array, c: jax.Array | None = None,
               frames: jax.Array | None = None, train: bool = False) -> jax.Array:
    """embeddings [B, T', H', W', E] (codebook vectors of the codes) -> logits [B, T', H', W',
    num_codes]; the logits at a position depend only on the codes before it."""
    if embeddings.ndim != 5 or tuple(embeddings.shape[1:4]) != tuple(self.latent_shape):
      raise ValueError(f'The prior expects code vectors [B, {", ".join(map(str, self.latent_shape))}'
                       f', E] (model.latent_shape), got shape {embeddings.shape}.')
    batch = embeddings.shape[0]
    self._check_condition(batch, c)
    self._check_frames(batch, frames)
    x = self.input_proj(embeddings.reshape(batch, -1, embeddings.shape[-1]))
    start = jnp.broadcast_to(self.start.astype(self.dtype), (batch, 1, self.width))
    x = jnp.concatenate([start, x[:, :-1]], axis=1)
    x = x + self.positions().reshape(-1, self.width).astype(self.dtype)
    context = self.frame_encoder(frames) if self.cond_frames else None
    c = self._per_token(c)
    for block in self.blocks:
      x = block(x, c, context, train)
    logits = self.output_proj(self.final_norm(x, c)).astype(jnp.float32)
    return logits.reshape(batch, *self.latent_shape, self.num_codes)

  def init_cache(self, batch_size: int, frames: jax.Array | None = None) -> list[dict]:
    """The key/value caches `decode` reads and updates, one per block; the conditioning frames
    are encoded once here."""
    self._check_frames(batch_size, frames)
    context = self.frame_encoder(frames) if self.cond_frames else None
    return [block.init_cache(batch_size, context) for block in self.blocks]

  def decode(self, previous: jax.Array, index: jax.Array, cache: list[dict],
             c: jax.Array | None = None) -> tuple[jax.Array, list[dict]]:
    """(logits [B, num_codes] of raster position `index`, updated cache) from the codebook
    vector [B, E] of the code at index - 1 (ignored at index 0, where the start vector stands)
    and the cache of the positions before `index`. c as in __call__."""
    batch = previous.shape[0]
    self._check_condition(batch, c)
    x = jnp.where(index == 0, self.start.astype(self.dtype), self.input_proj(previous))[:, None]
    positions = self.positions().reshape(-1, self.width).astype(self.dtype)
    x = x + jax.lax.dynamic_index_in_dim(positions, index, 0)
    if c is not None and c.ndim == 3:
      c = jax.lax.dynamic_index_in_dim(c, index // math.prod(self.latent_shape[1:]), 1)
    elif c is not None:
      c = c[:, None]
    new_cache = []
    for block, block_cache in zip(self.blocks, cache):
      x, block_cache = block.decode(x, c, index, block_cache)
      new_cache.append(block_cache)
    logits = self.output_proj(self.final_norm(x, c)).astype(jnp.float32)
    return logits.reshape(batch, self.num_codes), new_cache


def sample_logits(key: jax.Array, logits: jax.Array, temperature: float = 1.0,
                  top_k: int = 0) -> jax.Array:
  """Codes [B] drawn from logits [B, K] / temperature, among the top_k most likely (0: all)."""
  if temperature <= 0:
    raise ValueError(f'The sampling temperature must be positive, got {temperature}.')
  logits = logits / temperature
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][:, -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.random.categorical(key, logits).astype(jnp.int32)


@functools.partial(jax.jit, static_argnames=('model', 'batch_size', 'temperature', 'top_k',
                                             'cached'))
def sample_codes(model: VideoGPT, params, codebook: jax.Array, key: jax.Array, batch_size: int,
                 c: jax.Array | None = None, frames: jax.Array | None = None,
                 prefix: jax.Array | None = None, temperature: float = 1.0, top_k: int = 0,
                 cached: bool = True) -> jax.Array:
  """Codes [B, T', H', W'] sampled one raster position at a time (lax.fori_loop over the L
  positions, one compiled program).

  codebook: the VQ-VAE's code vectors [num_codes, E]. c, frames: the conditioning (as in
  VideoGPT.__call__). prefix: codes [B, P] kept as given for the first P positions (e.g. the
  context frames' codes); the rest are drawn. Position i draws with fold_in(key, i).
  cached=True runs `decode` on the key/value cache (O(L) work per position); cached=False
  recomputes the whole sequence at every position (the reference the cache must match).
  """
  length = math.prod(model.latent_shape)
  codes = jnp.zeros((batch_size, length), jnp.int32)
  given = 0
  if prefix is not None:
    given = prefix.shape[1]
    codes = codes.at[:, :given].set(prefix.astype(jnp.int32))
  variables = {'params': params}

  def choose(i, codes, logits):
    drawn = sample_logits(jax.random.fold_in(key, i), logits, temperature, top_k)
    return codes.at[:, i].set(jnp.where(i < given, codes[:, i], drawn))

  if cached:
    def step(i, carry):
      codes, cache = carry
      previous = codebook[codes[:, jnp.maximum(i - 1, 0)]]
      logits, cache = model.apply(variables, previous, i, cache, c, method=VideoGPT.decode)
      return choose(i, codes, logits), cache

    cache = model.apply(variables, batch_size, frames, method=VideoGPT.init_cache)
    codes, _ = jax.lax.fori_loop(0, length, step, (codes, cache))
  else:
    def step(i, codes):
      embeddings = codebook[codes].reshape(batch_size, *model.latent_shape, -1)
      logits = model.apply(variables, embeddings, c, frames).reshape(batch_size, length, -1)
      return choose(i, codes, jax.lax.dynamic_index_in_dim(logits, i, 1, keepdims=False))

    codes = jax.lax.fori_loop(0, length, step, codes)
  return codes.reshape(batch_size, *model.latent_shape)
