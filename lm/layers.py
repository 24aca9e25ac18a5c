"""Transformer building blocks shared by every model.

Shape legend (also used in einsum strings):
  B batch, L query length, M key length, D model width, H query heads, G key/value heads,
  R query heads per key/value head (H = G * R), K head width, F MLP hidden width, V vocabulary.

Numerics: params are float32; `dtype` is the dtype of matmul *inputs*. Every matmul accumulates and returns
float32 (`preferred_element_type`), so activations, norms, softmax and the loss stay float32. On CPUs with
bf16 matrix instructions this is ~4x faster than float32 and as accurate as a float32 accumulate allows. The
matmuls and the fused attention kernel, with backward passes written for XLA:CPU, live in `kernels.py`.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, NamedTuple

import flax.linen as nn
import jax
from jax.ad_checkpoint import checkpoint_name
import jax.numpy as jnp
import numpy as np

from lm import kernels

Array = jax.Array
default_kernel_init = nn.initializers.normal(stddev=0.02)
# Dense-kernel initialisers by name (model.kernel_init). 'normal': GPT-2's std 0.02. 'fan_in': T5's std
# fan_in^-0.5 (truncated), whose outputs have unit scale like T5's std-1 embeddings; with std-0.02 kernels those
# embeddings swamp every block's output and the decoder learns to ignore the encoder.
KERNEL_INITS = {
    'normal': default_kernel_init,
    'fan_in': nn.initializers.variance_scaling(1.0, 'fan_in', 'truncated_normal'),
}


# ----------------------------------------------------------------------------------------------------------
# Dense layers and the tied output projection.


class Dense(nn.Module):
  """A dense layer over the last axis: `[..., D] -> [..., features]`.

  `kernel_axes` names the kernel's logical axes ('embed', 'heads', 'mlp', 'vocab'); lm/parallel.py maps
  them to mesh axes. The output is tagged 'matmul' for the save-matmul-outputs remat policy.
  """
  features: int
  kernel_axes: tuple[str | None, str | None] = (None, None)
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = default_kernel_init

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', nn.with_logical_partitioning(self.kernel_init, self.kernel_axes),
                        (x.shape[-1], self.features), jnp.float32)
    y = checkpoint_name(kernels.matmul(x, kernel, self.dtype), 'matmul')
    if self.use_bias:
      bias_init = nn.with_logical_partitioning(nn.initializers.zeros, self.kernel_axes[1:])
      y = y + self.param('bias', bias_init, (self.features,), jnp.float32)
    return y


def tied_logits(x: Array, embedding: Array, dtype: jnp.dtype) -> Array:
  """The tied output projection: `x[..., D]` -> float32 logits `[..., V]` by the transpose of `embedding[V, D]`."""
  return kernels.matmul_transposed(x, embedding, dtype)


# ----------------------------------------------------------------------------------------------------------
# Norms and positions.


# model.norm -> the norm, in float32 (config.CHOICES holds the names; `ModelConfig` checked them).
NORMS = {
    'layernorm': lambda eps, use_bias: nn.LayerNorm(epsilon=eps, use_bias=use_bias, dtype=jnp.float32),
    'rmsnorm': lambda eps, use_bias: nn.RMSNorm(epsilon=eps, dtype=jnp.float32),  # RMSNorm has no bias.
}


def make_norm(kind: str, eps: float, use_bias: bool) -> nn.Module:
  return NORMS[kind](eps, use_bias)


def sinusoidal_positions(positions: Array, width: int) -> Array:
  """Transformer sinusoids: `[B, L] -> [B, L, width]`, sin on the first half, cos on the second."""
  half = width // 2
  inv_freq = 1.0 / (10000.0 ** (np.arange(half, dtype=np.float32) / half))
  angles = positions[..., None].astype(jnp.float32) * inv_freq
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


class Rope(NamedTuple):
  """Rotary embedding settings (config.model.rope_*, which declares them): the wavelength base and a context
  extension of Hugging Face's rope types ('' none, 'linear', 'dynamic', 'llama3'), whose frequencies
  `rope_frequencies` computes as theirs."""
  base: float
  scaling: str = ''
  factor: float = 1.0
  original_max_len: int = 0
  low_freq_factor: float = 1.0
  high_freq_factor: float = 4.0


def _llama3_frequencies(inv_freq: np.ndarray, rope: Rope) -> np.ndarray:
  """Llama 3.1: long wavelengths divided by the factor, short ones kept, a linear blend between."""
  wavelength = 2 * math.pi / inv_freq
  low, high = rope.original_max_len / rope.low_freq_factor, rope.original_max_len / rope.high_freq_factor
  scaled = np.where(wavelength > low, inv_freq / rope.factor, inv_freq)
  smooth = (rope.original_max_len / wavelength - rope.low_freq_factor) / (rope.high_freq_factor - rope.low_freq_factor)
  blended = (1 - smooth) * scaled / rope.factor + smooth * scaled
  return np.where((wavelength >= high) & (wavelength <= low), blended, scaled).astype(np.float32)


def rope_frequencies(rope: Rope, head_dim: int, positions: Array) -> Array:
  """The K/2 inverse frequencies of `rope` for a batch at `positions` ('dynamic' reads its longest position)."""
  exponents = np.arange(0, head_dim, 2, dtype=np.float32) / head_dim
  if rope.scaling == 'dynamic':  # NTK: a larger base once the context passes the original one, as HF computes it.
    length = jnp.maximum(jnp.max(positions) + 1, rope.original_max_len).astype(jnp.float32)
    base = rope.base * ((rope.factor * length / rope.original_max_len) - (rope.factor - 1)) ** (
        head_dim / (head_dim - 2))
    return 1.0 / (base ** exponents)
  inv_freq = (1.0 / (rope.base ** exponents)).astype(np.float32)
  if rope.scaling == 'linear':
    return inv_freq / np.float32(rope.factor)
  if rope.scaling == 'llama3':
    return _llama3_frequencies(inv_freq, rope)
  return inv_freq


ROPE_SCALINGS = ('', 'linear', 'dynamic', 'llama3')  # config.CHOICES['model.rope_scaling'].


def apply_rope(x: Array, positions: Array, rope: Rope) -> Array:
  """Rotary embedding of `x[B, L, H, K]` at `positions[B, L]`, rotating (first half, second half) pairs (the
  layout of Hugging Face's Llama checkpoints)."""
  half = x.shape[-1] // 2
  angles = positions[..., None].astype(jnp.float32) * rope_frequencies(rope, x.shape[-1], positions)  # [B, L, K/2]
  sin, cos = jnp.sin(angles)[:, :, None, :], jnp.cos(angles)[:, :, None, :]
  x1, x2 = x[..., :half], x[..., half:]
  return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1)


# ----------------------------------------------------------------------------------------------------------
# Attention.


def attention_mask(q_segment_ids: Array, kv_segment_ids: Array, causal: bool) -> Array:
  """Boolean `[B, 1, L, M]`: True where query l may attend to key m.

  Tokens attend only inside their own segment (document), and segment id 0 marks padding, which attends to
  and is attended by nothing. Example, causal, segments [1 1 2 2]: query 2 sees key 2 only; query 3 sees 2, 3.
  """
  mask = (q_segment_ids[:, :, None] == kv_segment_ids[:, None, :]) & (kv_segment_ids[:, None, :] != 0)
  if causal:
    length = q_segment_ids.shape[1]
    mask &= jnp.tril(jnp.ones((length, kv_segment_ids.shape[1]), bool))
  return mask[:, None]


def reference_attention(q: Array, k: Array, v: Array, mask: Array, dtype: jnp.dtype,
                        bias: Array | None = None) -> Array:
  """softmax(Q K^T / sqrt(K) + bias) V, written out as einsums under plain autodiff. q [B, L, H, K],
  k/v [B, M, G, K], mask [B, 1, L, M], bias (e.g. T5's relative positions) broadcastable to [B, H, L, M].

  The reference the attention implementations are tested against, and what a decoding step runs (one query
  over the cache: no backward pass for the fused kernel to speed up)."""
  b, l, h, d = q.shape
  g = k.shape[2]
  q = q.reshape(b, l, g, h // g, d) * (1.0 / math.sqrt(d))
  scores = jnp.einsum('BLGRK,BMGK->BGRLM', q.astype(dtype), k.astype(dtype),
                      preferred_element_type=jnp.float32)
  if bias is not None:
    bias = jnp.broadcast_to(bias, (bias.shape[0], h, l, k.shape[1]))
    scores = scores + bias.reshape(bias.shape[0], g, h // g, l, -1)
  scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1)  # float32 softmax whatever the compute dtype.
  out = jnp.einsum('BGRLM,BMGK->BLGRK', probs.astype(dtype), v.astype(dtype),
                   preferred_element_type=jnp.float32)
  return out.reshape(b, l, h, d)


def xla_attention(q: Array, k: Array, v: Array, mask: Array, dtype: jnp.dtype, bias: Array | None = None) -> Array:
  """The same function through `jax.nn.dot_product_attention` (its XLA implementation: any mask, any device)."""
  bias = None if bias is None else bias.astype(dtype)
  out = jax.nn.dot_product_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype), bias=bias, mask=mask)
  return out.astype(jnp.float32)


def length_masked_attention(q: Array, k: Array, v: Array, q_segment_ids: Array, kv_segment_ids: Array,
                            causal: bool, dtype: jnp.dtype, implementation: str | None = 'cudnn',
                            bias: Array | None = None) -> Array:
  """`jax.nn.dot_product_attention` with `is_causal` and per-row lengths instead of a mask.

  This is the form cuDNN's fused flash-attention kernel takes (an explicit mask would become a dense
  [B, H, L, M] bias). It is exact only when every row is one document followed by padding, segment ids
  1..1 0..0 (concat-and-chunk LM rows, unpacked seq2seq rows); train.validate_config rejects packed data.
  Padding queries attend to nothing in the mask-based paths and are zeroed here to match.
  """
  q_lengths = jnp.sum(q_segment_ids != 0, axis=-1).astype(jnp.int32)
  kv_lengths = jnp.sum(kv_segment_ids != 0, axis=-1).astype(jnp.int32)
  bias = None if bias is None else bias.astype(dtype)
  out = jax.nn.dot_product_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype), bias=bias, is_causal=causal,
                                     query_seq_lengths=q_lengths, key_value_seq_lengths=kv_lengths,
                                     implementation=implementation)
  return jnp.where((q_segment_ids != 0)[:, :, None, None], out.astype(jnp.float32), 0.0)


def relative_position_bucket(relative_position: Array, bidirectional: bool, num_buckets: int = 32,
                             max_distance: int = 128) -> Array:
  """T5's bucketing of `relative_position = key position - query position` (Raffel et al. 2020; the
  mesh_tensorflow / t5x function). Half the buckets are exact offsets, the rest log-spaced up to
  `max_distance`; bidirectional splits the buckets between keys before and after the query."""
  n = -relative_position
  bucket = jnp.zeros_like(n)
  if bidirectional:
    num_buckets //= 2
    bucket = bucket + (n < 0).astype(n.dtype) * num_buckets
    n = jnp.abs(n)
  else:
    n = jnp.maximum(n, 0)
  max_exact = num_buckets // 2
  is_small = n < max_exact
  large = max_exact + (jnp.log(n.astype(jnp.float32) / max_exact + np.finfo(np.float32).eps)
                       / np.log(max_distance / max_exact) * (num_buckets - max_exact)).astype(n.dtype)
  large = jnp.minimum(large, num_buckets - 1)
  return bucket + jnp.where(is_small, n, large)


class RelativePositionBias(nn.Module):
  """T5's learned relative position bias: one scalar per (bucket, head), added to the attention scores.

  Made once per stack and shared by its layers, as in T5. `[B, L]` query and `[B, M]` key positions ->
  float32 `[B, H, L, M]`. Positions restart per packed document, so offsets never span two documents'
  numbering (and the segment mask hides cross-document pairs anyway).
  """
  num_heads: int
  bidirectional: bool
  num_buckets: int = 32
  max_distance: int = 128

  @nn.compact
  def __call__(self, q_positions: Array, k_positions: Array) -> Array:
    table = self.param('rel_embedding', nn.with_logical_partitioning(default_kernel_init, (None, None)),
                       (self.num_buckets, self.num_heads), jnp.float32)
    offsets = k_positions[:, None, :] - q_positions[:, :, None]  # [B, L, M]
    buckets = relative_position_bucket(offsets.astype(jnp.int32), self.bidirectional, self.num_buckets,
                                       self.max_distance)
    return jnp.take(table, buckets, axis=0).transpose(0, 3, 1, 2)  # [B, H, L, M]


# The variable collection of the encoder-side decoding state (cross-attention keys/values, PointerGenerator's
# copy keys and tokens): computed once per input, read by every step.
ENCODER_KV = 'encoder_kv'


class Attention(nn.Module):
  """Multi-head attention, self or cross, with grouped key/value heads, segment masks, optional RoPE, an
  optional additive bias (T5 relative positions) and a key/value cache for decoding.

  Self-attention: `__call__(x, segment_ids, positions)`. Cross-attention: also `kv` (the encoder output) and
  `kv_segment_ids`; queries attend to keys of the same segment id.

  Decoding (`decode=True`): the first call (made by `DecoderLM.init_decode_cache` or
  `EncoderDecoder.encode_for_decoding` on a full-length input) creates the decoding variables: in 'cache',
  self-attention keys/values of that length; in ENCODER_KV, the cross-attention keys/values of `kv`, computed
  once. Each later call takes the tokens `x[B, l]` at positions decode_index .. decode_index + l - 1 (one per
  step, or a prompt at once), writes their keys/values there and attends causally to the positions up to each (by
  `reference_attention`); cross-attention reads its cached keys/values and ignores `kv`.
  `bias_fn(q_positions, k_positions)` supplies the bias then.
  """
  num_heads: int
  num_kv_heads: int
  head_dim: int
  causal: bool = True
  rope: Rope | None = None  # None: no rotary embedding.
  scale_scores: bool = True  # False: unscaled Q.K scores (T5).
  implementation: str = 'fused'  # model.attention: a key of ATTENTION_IMPLEMENTATIONS, or 'cudnn'.
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = default_kernel_init

  @nn.compact
  def __call__(self, x: Array, segment_ids: Array, positions: Array, *, kv: Array | None = None,
               kv_segment_ids: Array | None = None, bias: Array | None = None, bias_fn: Callable | None = None,
               decode: bool = False, decode_index: Array | None = None) -> Array:
    b, l, d = x.shape
    cross = kv_segment_ids is not None
    dense = functools.partial(Dense, use_bias=self.use_bias, dtype=self.dtype, kernel_axes=('embed', 'heads'),
                              kernel_init=self.kernel_init)
    q = dense(self.num_heads * self.head_dim, name='query')(x).reshape(b, l, self.num_heads, self.head_dim)
    project_kv = lambda source: tuple(
        dense(self.num_kv_heads * self.head_dim, name=name)(source).reshape(
            source.shape[0], source.shape[1], self.num_kv_heads, self.head_dim) for name in ('key', 'value'))
    if cross and decode:  # Their own collection: decoding steps read it but never write it.
      cached = self.has_variable(ENCODER_KV, 'cached_key')
      k, v = (None, None) if cached else project_kv(kv)
      k = self.variable(ENCODER_KV, 'cached_key', lambda: k.astype(self.dtype)).value
      v = self.variable(ENCODER_KV, 'cached_value', lambda: v.astype(self.dtype)).value
    else:
      k, v = project_kv(x if kv is None else kv)
    if self.rope is not None and not cross:
      q, k = apply_rope(q, positions, self.rope), apply_rope(k, positions, self.rope)
    if not self.scale_scores:  # Every implementation divides by sqrt(K): undone here, so params keep T5's meaning.
      q = q * math.sqrt(self.head_dim)

    if decode and not cross and self.has_variable('cache', 'cached_key'):
      # New tokens: write their keys/values from decode_index on; each attends to the positions up to its own.
      cached_k, cached_v = self.variable('cache', 'cached_key'), self.variable('cache', 'cached_value')
      where = (0, decode_index, 0, 0)
      cached_k.value = jax.lax.dynamic_update_slice(cached_k.value, k.astype(cached_k.value.dtype), where)
      cached_v.value = jax.lax.dynamic_update_slice(cached_v.value, v.astype(cached_v.value.dtype), where)
      k, v = cached_k.value, cached_v.value
      key_positions = jnp.arange(k.shape[1], dtype=jnp.int32)
      query_positions = decode_index + jnp.arange(l, dtype=jnp.int32)
      mask = jnp.broadcast_to(key_positions <= query_positions[:, None], (b, 1, l, k.shape[1]))
      if bias_fn is not None:
        bias = bias_fn(positions, jnp.broadcast_to(key_positions, (b, k.shape[1])))
      out = reference_attention(q, k, v, mask, self.dtype, bias)
    else:
      if decode and not cross:  # First call: make a cache as long as this input; nothing to attend yet.
        self.variable('cache', 'cached_key', lambda: jnp.zeros(k.shape, self.dtype))
        self.variable('cache', 'cached_value', lambda: jnp.zeros(v.shape, self.dtype))
      kv_segment_ids = segment_ids if kv_segment_ids is None else kv_segment_ids
      if decode and cross:
        segment_ids = jnp.ones_like(segment_ids)  # One target per row while decoding.
      if self.implementation == 'cudnn':
        out = length_masked_attention(q, k, v, segment_ids, kv_segment_ids, self.causal, self.dtype, bias=bias)
      else:
        mask = attention_mask(segment_ids, kv_segment_ids, self.causal)
        out = ATTENTION_IMPLEMENTATIONS[self.implementation](q, k, v, mask, self.dtype, bias)
    out = out.reshape(b, l, self.num_heads * self.head_dim)
    return dense(d, kernel_axes=('heads', 'embed'), name='out')(out)


class PointerGenerator(nn.Module):
  """A copy mechanism over the encoder's tokens (See et al. 2017, "Get To The Point"), applied to the logits.

  One attention head from the decoder output `x[B, L, D]` over the encoder output `source[B, M, D]` (same
  segment only) gives copy weights a[B, L, M]; a gate g = sigmoid(w . [x; a @ keys] + b) mixes
      p(w) = g * softmax(logits)(w) + (1 - g) * sum of a over the source positions holding token w.
  Returns log p [B, L, V] in float32 in place of the logits: softmax and log_softmax leave it as it is, so the
  losses and samplers read it as logits. It lets a small model repeat words of its input (a function's name
  words) that it has rarely produced in training, which it would otherwise have to learn to generate.

  Decoding (`decode=True`): the first call stores the source keys and tokens in ENCODER_KV, as cross-attention
  does; later calls read them and ignore `source`/`source_tokens`.
  """
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = default_kernel_init

  @nn.compact
  def __call__(self, x: Array, logits: Array, source: Array | None, source_tokens: Array | None,
               segment_ids: Array, source_segment_ids: Array, *, decode: bool = False) -> Array:
    b, l, d = x.shape
    if source_tokens is None and not (decode and self.has_variable(ENCODER_KV, 'copy_tokens')):
      raise ValueError('a pointer generator copies the encoder tokens: pass encoder_tokens to the decoder')
    dense = functools.partial(Dense, d, kernel_axes=('embed', 'heads'), use_bias=self.use_bias, dtype=self.dtype,
                              kernel_init=self.kernel_init)
    if decode:  # Computed once per input, like cross-attention's keys/values.
      cached = self.has_variable(ENCODER_KV, 'copy_key')
      key = None if cached else dense(name='key')(source)
      key = self.variable(ENCODER_KV, 'copy_key', lambda: key.astype(self.dtype)).value
      source_tokens = self.variable(ENCODER_KV, 'copy_tokens', lambda: source_tokens.astype(jnp.int32)).value
      segment_ids = jnp.ones_like(segment_ids)  # One target per row while decoding.
    else:
      key = dense(name='key')(source)
    query = dense(name='query')(x)
    scores = kernels.bmm(query, jnp.swapaxes(key, 1, 2), self.dtype) * d**-0.5  # [B, L, M]
    mask = attention_mask(segment_ids, source_segment_ids, causal=False)[:, 0]
    weights = jax.nn.softmax(jnp.where(mask, scores, jnp.finfo(jnp.float32).min), axis=-1)
    context = kernels.bmm(weights, key, self.dtype)  # [B, L, D]
    # Always with a bias: the gate's prior between generating and copying.
    gate = jax.nn.sigmoid(Dense(1, dtype=self.dtype, kernel_init=self.kernel_init, name='gate')(
        jnp.concatenate([x, context], axis=-1)))  # [B, L, 1]
    rows, steps = jnp.arange(b)[:, None, None], jnp.arange(l)[None, :, None]
    copy = jnp.zeros(logits.shape, jnp.float32).at[rows, steps, source_tokens[:, None, :]].add(weights)
    probs = gate * jax.nn.softmax(logits.astype(jnp.float32), axis=-1) + (1 - gate) * copy
    return jnp.log(jnp.maximum(probs, jnp.finfo(jnp.float32).tiny))


_gelu = functools.partial(jax.nn.gelu, approximate=True)  # The tanh approximation (GPT-2, T5 v1.1).
# model.mlp -> (activation, gated). A gated MLP multiplies activation(x W_gate) by x W_in.
MLP_ACTIVATIONS = {'gelu': (_gelu, False), 'relu': (jax.nn.relu, False), 'swiglu': (jax.nn.silu, True),
                   'gated_gelu': (_gelu, True)}


class Mlp(nn.Module):
  """Position-wise MLP: GELU (tanh approximation), ReLU (T5), SwiGLU, or gated GELU (T5 v1.1)."""
  hidden: int
  activation: str = 'gelu'
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = default_kernel_init

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dense = functools.partial(Dense, use_bias=self.use_bias, dtype=self.dtype, kernel_axes=('embed', 'mlp'),
                              kernel_init=self.kernel_init)
    activation, gated = MLP_ACTIVATIONS[self.activation]
    if gated:
      h = activation(dense(self.hidden, name='wi_gate')(x)) * dense(self.hidden, name='wi')(x)
    else:
      h = activation(dense(self.hidden, name='wi')(x))
    return dense(x.shape[-1], kernel_axes=('mlp', 'embed'), name='wo')(h)


# config.model.attention -> implementation over a mask ('cudnn', which takes lengths instead, is
# `length_masked_attention`). 'fused': the explicit formula with its backward pass written for XLA:CPU (tested
# against autodiff of `reference_attention`); 'xla': jax.nn's XLA implementation, which lets XLA fuse it.
ATTENTION_IMPLEMENTATIONS = {'fused': kernels.fused_attention, 'xla': xla_attention}
