"""Transformer building blocks shared by every model.

Shape legend (also used in einsum strings):
  B batch, L query length, M key length, D model width, H query heads, G key/value heads,
  R query heads per key/value head (H = G * R), K head width, F MLP hidden width, V vocabulary.

Numerics: params are float32; `dtype` is the dtype of matmul *inputs*. Every matmul accumulates and returns
float32 (`preferred_element_type`), so activations, norms, softmax and the loss stay float32. On CPUs with
bf16 matrix instructions this is ~4x faster than float32 and as accurate as a float32 accumulate allows.
"""
from __future__ import annotations

import functools
import math
from typing import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
default_kernel_init = nn.initializers.normal(stddev=0.02)


# ----------------------------------------------------------------------------------------------------------
# Matmul with a CPU-friendly backward pass.


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x: Array, w: Array, dtype: jnp.dtype) -> Array:
  """`x[..., D] @ w[D, F]` with inputs cast to `dtype` and a float32 result."""
  return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def _matmul_fwd(x, w, dtype):
  xc, wc = x.astype(dtype), w.astype(dtype)
  # Zero-size arrays carry the primal dtypes (residuals must be arrays) so cotangents match them.
  dtypes = (jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))
  return jnp.matmul(xc, wc, preferred_element_type=jnp.float32), (xc, wc, dtypes)


def _matmul_bwd(dtype, residuals, g):
  xc, wc, (x_like, w_like) = residuals
  gc = g.astype(dtype)
  x2 = xc.reshape(-1, xc.shape[-1])
  g2 = gc.reshape(-1, gc.shape[-1])
  # XLA:CPU's fast dot path needs row-major operands; a plain `x2.T @ g2` reads x2 column-major and falls
  # back to a slow kernel. Materialising the transposes (behind a barrier XLA cannot fold) keeps both
  # gradient dots on the fast path.
  x2t, wt = jax.lax.optimization_barrier((x2.T, wc.T))
  dw = jnp.matmul(x2t, g2, preferred_element_type=jnp.float32)
  dx = jnp.matmul(gc, wt, preferred_element_type=jnp.float32)
  return dx.astype(x_like.dtype), dw.astype(w_like.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


class Dense(nn.Module):
  """A dense layer over the last axis: `[..., D] -> [..., features]`."""
  features: int
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32
  kernel_init: Callable = default_kernel_init

  @nn.compact
  def __call__(self, x: Array) -> Array:
    kernel = self.param('kernel', self.kernel_init, (x.shape[-1], self.features), jnp.float32)
    y = matmul(x, kernel, self.dtype)
    if self.use_bias:
      y = y + self.param('bias', nn.initializers.zeros, (self.features,), jnp.float32)
    return y


# ----------------------------------------------------------------------------------------------------------
# Norms and positions.


def make_norm(kind: str, eps: float, use_bias: bool) -> nn.Module:
  if kind == 'layernorm':
    return nn.LayerNorm(epsilon=eps, use_bias=use_bias, dtype=jnp.float32)
  if kind == 'rmsnorm':
    return nn.RMSNorm(epsilon=eps, dtype=jnp.float32)
  raise ValueError(f'model.norm={kind!r}: expected "layernorm" or "rmsnorm"')


def sinusoidal_positions(positions: Array, width: int) -> Array:
  """Transformer sinusoids: `[B, L] -> [B, L, width]`, sin on the first half, cos on the second."""
  half = width // 2
  inv_freq = 1.0 / (10000.0 ** (np.arange(half, dtype=np.float32) / half))
  angles = positions[..., None].astype(jnp.float32) * inv_freq
  return jnp.concatenate([jnp.sin(angles), jnp.cos(angles)], axis=-1)


def apply_rope(x: Array, positions: Array, base: float) -> Array:
  """Rotary embedding of `x[B, L, H, K]` at `positions[B, L]`, rotating (first half, second half) pairs."""
  half = x.shape[-1] // 2
  inv_freq = 1.0 / (base ** (np.arange(half, dtype=np.float32) / half))
  angles = positions[..., None].astype(jnp.float32) * inv_freq  # [B, L, K/2]
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


def dot_product_attention(q: Array, k: Array, v: Array, mask: Array, dtype: jnp.dtype) -> Array:
  """softmax(Q K^T / sqrt(K)) V, written out. q [B, L, H, K], k/v [B, M, G, K], mask [B, 1, L, M]."""
  b, l, h, d = q.shape
  g = k.shape[2]
  q = q.reshape(b, l, g, h // g, d) * (1.0 / math.sqrt(d))
  scores = jnp.einsum('BLGRK,BMGK->BGRLM', q.astype(dtype), k.astype(dtype),
                      preferred_element_type=jnp.float32)
  scores = jnp.where(mask[:, :, None], scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1)  # float32 softmax whatever the compute dtype.
  out = jnp.einsum('BGRLM,BMGK->BLGRK', probs.astype(dtype), v.astype(dtype),
                   preferred_element_type=jnp.float32)
  return out.reshape(b, l, h, d)


def jax_dot_product_attention(q: Array, k: Array, v: Array, mask: Array, dtype: jnp.dtype) -> Array:
  """The same function through `jax.nn.dot_product_attention`, which can pick cuDNN flash attention on GPU."""
  out = jax.nn.dot_product_attention(q.astype(dtype), k.astype(dtype), v.astype(dtype), mask=mask)
  return out.astype(jnp.float32)


ATTENTION_IMPLEMENTATIONS = {'einsum': dot_product_attention, 'dot_product_attention': jax_dot_product_attention}


class Attention(nn.Module):
  """Multi-head self-attention with grouped key/value heads, segment masking and optional RoPE."""
  num_heads: int
  num_kv_heads: int
  head_dim: int
  causal: bool = True
  rope_base: float | None = None  # None: no rotary embedding.
  implementation: str = 'einsum'
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array, segment_ids: Array, positions: Array) -> Array:
    b, l, d = x.shape
    dense = functools.partial(Dense, use_bias=self.use_bias, dtype=self.dtype)
    q = dense(self.num_heads * self.head_dim, name='query')(x).reshape(b, l, self.num_heads, self.head_dim)
    k = dense(self.num_kv_heads * self.head_dim, name='key')(x).reshape(b, l, self.num_kv_heads, self.head_dim)
    v = dense(self.num_kv_heads * self.head_dim, name='value')(x).reshape(b, l, self.num_kv_heads, self.head_dim)
    if self.rope_base is not None:
      q, k = apply_rope(q, positions, self.rope_base), apply_rope(k, positions, self.rope_base)
    mask = attention_mask(segment_ids, segment_ids, self.causal)
    out = ATTENTION_IMPLEMENTATIONS[self.implementation](q, k, v, mask, self.dtype)
    return dense(d, name='out')(out.reshape(b, l, self.num_heads * self.head_dim))


class Mlp(nn.Module):
  """Position-wise MLP: GELU (tanh approximation) or SwiGLU."""
  hidden: int
  activation: str = 'gelu'
  use_bias: bool = True
  dtype: jnp.dtype = jnp.float32

  @nn.compact
  def __call__(self, x: Array) -> Array:
    dense = functools.partial(Dense, use_bias=self.use_bias, dtype=self.dtype)
    if self.activation == 'gelu':
      h = jax.nn.gelu(dense(self.hidden, name='wi')(x), approximate=True)
    elif self.activation == 'swiglu':
      h = jax.nn.silu(dense(self.hidden, name='wi_gate')(x)) * dense(self.hidden, name='wi')(x)
    else:
      raise ValueError(f'model.mlp={self.activation!r}: expected "gelu" or "swiglu"')
    return dense(x.shape[-1], name='wo')(h)
