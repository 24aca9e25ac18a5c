"""XLA:CPU-specific kernels: matmuls and attention whose backward passes XLA:CPU runs fast.

XLA:CPU runs a bf16 dot on its fast (YNNPACK) path only if both operands are row-major; otherwise it upcasts the
dot to float32, ~3x slower (float32 dots are slower too). Autodiff of a matmul or of attention produces dots
with transposed operands, which XLA:CPU takes for column-major views. So the backward passes here are written
by hand over `transpose_rows` operands. Other backends read transposed operands natively and get plain dots.

Shape letters as in `layers.py`. Every function takes `dtype`, the dtype of the dot inputs, and returns float32.
"""
from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

Array = jax.Array


# ----------------------------------------------------------------------------------------------------------
# Row-major transposes and matmuls.


def transpose_rows(a: Array) -> Array:
  """`a[..., M, N] -> [..., N, M]`, materialised row-major for use as a dot operand.

  Why: XLA:CPU decides a dot's kernel before layout assignment and takes any transpose, even one behind an
  optimization barrier, for a column-major view, so the dot is upcast to float32. A concatenation of two
  transposed halves is a new row-major array, so the dot stays bf16 at the price of one copy (float32 dots
  gain too). Other backends read transposed operands natively.
  """
  swapped = jnp.swapaxes(a, -1, -2)
  n = a.shape[-1]
  if jax.default_backend() != 'cpu' or n < 2:
    return swapped
  halves = jnp.concatenate([swapped[..., :n // 2, :], swapped[..., n // 2:, :]], axis=-2)
  return jax.lax.optimization_barrier(halves)  # Else XLA folds it back into a transposed dot operand.


# Why a custom VJP: autodiff's weight gradient x^T g reads x transposed, which XLA:CPU runs as a slow float32
# dot (the largest single cost of a CPU train step); this backward pass reads row-major transposes instead.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul(x: Array, w: Array, dtype: jnp.dtype) -> Array:
  """`x[..., D] @ w[D, F]` with inputs cast to `dtype` and a float32 result."""
  return jnp.matmul(x.astype(dtype), w.astype(dtype), preferred_element_type=jnp.float32)


def _cast_operands(x, w, dtype):
  """(x and w cast to dtype, zero-size arrays of their own dtypes): the residuals of the matmuls' backward passes,
  whose cotangents must take the primal dtypes (and residuals must be arrays)."""
  return x.astype(dtype), w.astype(dtype), (jnp.zeros((0,), x.dtype), jnp.zeros((0,), w.dtype))


def _matmul_fwd(x, w, dtype):
  xc, wc, dtypes = _cast_operands(x, w, dtype)
  return jnp.matmul(xc, wc, preferred_element_type=jnp.float32), (xc, wc, dtypes)


def _matmul_bwd(dtype, residuals, g):
  xc, wc, (x_like, w_like) = residuals
  gc = g.astype(dtype)
  x2 = xc.reshape(-1, xc.shape[-1])
  g2 = gc.reshape(-1, gc.shape[-1])
  # On CPU transpose the narrower operand, x^T g or (g^T x)^T; other backends read x^T in place.
  if x2.shape[1] <= g2.shape[1] or jax.default_backend() != 'cpu':
    dw = jnp.matmul(transpose_rows(x2), g2, preferred_element_type=jnp.float32)
  else:
    dw = jax.lax.optimization_barrier(jnp.matmul(transpose_rows(g2), x2, preferred_element_type=jnp.float32)).T
  dx = jnp.matmul(gc, transpose_rows(wc), preferred_element_type=jnp.float32)  # g w^T
  return dx.astype(x_like.dtype), dw.astype(w_like.dtype)


matmul.defvjp(_matmul_fwd, _matmul_bwd)


# Why its own custom VJP: autodiff of `matmul(x, w.T)` lets XLA fold the transposes into a dot that XLA:CPU can
# run neither in bf16 nor fast.
@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def matmul_transposed(x: Array, w: Array, dtype: jnp.dtype) -> Array:
  """`x[..., D] @ w[F, D]^T` (a tied output projection) with inputs cast to `dtype` and a float32 result."""
  return _matmul_transposed_fwd(x, w, dtype)[0]


def _matmul_transposed_fwd(x, w, dtype):
  xc, wc, dtypes = _cast_operands(x, w, dtype)
  y = jax.lax.dot_general(xc, wc, (((xc.ndim - 1,), (1,)), ((), ())), preferred_element_type=jnp.float32)
  return y, (xc, wc, dtypes)


def _matmul_transposed_bwd(dtype, residuals, g):
  xc, wc, (x_like, w_like) = residuals
  gc = g.astype(dtype)
  dx = jnp.matmul(gc, wc, preferred_element_type=jnp.float32)
  dw = jnp.matmul(transpose_rows(gc.reshape(-1, gc.shape[-1])), xc.reshape(-1, xc.shape[-1]),
                  preferred_element_type=jnp.float32)  # g^T x
  return dx.astype(x_like.dtype), dw.astype(w_like.dtype)


matmul_transposed.defvjp(_matmul_transposed_fwd, _matmul_transposed_bwd)


def bmm(a: Array, b: Array, dtype) -> Array:
  """Batched `a[..., I, J] @ b[..., J, K]` with dtype inputs and a float32 result (plain autodiff)."""
  return jnp.matmul(a.astype(dtype), b.astype(dtype), preferred_element_type=jnp.float32)


# ----------------------------------------------------------------------------------------------------------
# Attention with a hand-written backward pass.


def _to_groups(x: Array, groups: int) -> Array:
  """[B, L, H, K] -> [B, G, R*L, K]: the R query heads sharing a key/value head become one long row block."""
  b, l, h, d = x.shape
  return x.reshape(b, l, groups, h // groups, d).transpose(0, 2, 3, 1, 4).reshape(b, groups, -1, d)


def _from_groups(x: Array, length: int) -> Array:
  """Inverse of `_to_groups`: [B, G, R*L, K] -> [B, L, H, K]."""
  b, g, rl, d = x.shape
  return x.reshape(b, g, rl // length, length, d).transpose(0, 3, 1, 2, 4).reshape(b, length, -1, d)


def fused_attention(q: Array, k: Array, v: Array, mask: Array, dtype: jnp.dtype,
                    bias: Array | None = None) -> Array:
  """softmax(Q K^T / sqrt(K) + bias) V, as `layers.reference_attention`, with a backward pass written for XLA:CPU.

  q [B, L, H, K], k/v [B, M, G, K], mask [B, 1, L, M]; `bias` (T5's relative positions) broadcasts to
  [B, H, L, M] and gets its gradient. Why: autodiff of the einsum formula spends ~5x longer in transposed dots
  on XLA:CPU. Here all dots are batched `[N, I, J] @ [N, J, K]` over row-major operands, and grouped queries are
  stacked so each key/value head is read once.
  """
  return _fused_attention(q, k, v, mask, bias, dtype)


@functools.partial(jax.custom_vjp, nondiff_argnums=(5,))
def _fused_attention(q, k, v, mask, bias, dtype):
  return _fused_attention_fwd(q, k, v, mask, bias, dtype)[0]


def _fused_attention_fwd(q, k, v, mask, bias, dtype):
  b, l, h, d = q.shape
  g, m = k.shape[2], k.shape[1]
  qg = _to_groups(q * (1.0 / math.sqrt(d)), g)  # [B, G, RL, K]
  kg, vg = _to_groups(k, g), _to_groups(v, g)  # [B, G, M, K]
  kt = transpose_rows(kg)  # [B, G, K, M]
  full_mask = jnp.tile(mask, (1, 1, h // g, 1))  # [B, 1, RL, M]
  scores = bmm(qg, kt, dtype)
  if bias is not None:  # Head h = g * R + r, so [B, H, L, M] is [B, G, RL, M] by a reshape.
    scores = scores + jnp.broadcast_to(bias, (b, h, l, m)).reshape(b, g, -1, m)
  scores = jnp.where(full_mask, scores, jnp.finfo(jnp.float32).min)
  probs = jax.nn.softmax(scores, axis=-1)  # float32.
  out = bmm(probs, vg, dtype)  # [B, G, RL, K]
  return _from_groups(out, l), (qg, kg, vg, probs, out, mask, bias)


def _fused_attention_bwd(dtype, residuals, grad_out):
  qg, kg, vg, probs, out, mask, bias = residuals
  b, l, h, d = grad_out.shape
  g, m = kg.shape[1], kg.shape[2]
  do = _to_groups(grad_out, g)  # [B, G, RL, K]
  vt, pt = transpose_rows(vg), transpose_rows(probs)
  dv = bmm(pt, do, dtype)  # [B, G, M, K]
  dp = bmm(do, vt, dtype)  # [B, G, RL, M]
  # Softmax backward: dS = P * (dP - rowsum(dO * O)); masked entries have P = 0.
  ds = probs * (dp - jnp.sum(do * out, axis=-1, keepdims=True))
  # A fully masked (padding) query gets a uniform softmax in the forward pass; its scores are constants, so
  # no gradient may flow through them.
  ds = jnp.where(jnp.tile(mask, (1, 1, h // g, 1)), ds, 0.0)
  dst = transpose_rows(ds)
  dq = bmm(ds, kg, dtype) * (1.0 / math.sqrt(d))
  dk = bmm(dst, qg, dtype)  # qg already carries the 1/sqrt(d) scale.
  dbias = None
  if bias is not None:  # The scores' gradient, summed over the axes the bias was broadcast along.
    dbias = ds.reshape(b, h, l, m)
    dbias = jnp.sum(dbias, axis=tuple(range(4 - bias.ndim)))
    dbias = jnp.sum(dbias, axis=tuple(i for i, n in enumerate(bias.shape) if n == 1), keepdims=True)
    dbias = dbias.astype(bias.dtype)
  return _from_groups(dq, l), _from_groups(dk, m), _from_groups(dv, m), None, dbias


_fused_attention.defvjp(_fused_attention_fwd, _fused_attention_bwd)
