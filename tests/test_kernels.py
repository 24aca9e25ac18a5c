"""lm/kernels.py: the XLA:CPU kernels equal the plain formulas in value and gradient, and keep bf16 dots bf16."""
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import kernels
from lm import layers


@pytest.mark.parametrize('shape', [(3, 4, 6), (2, 5), (4, 1), (1, 7)])  # Even, odd and single columns or rows.
def test_transpose_rows_is_the_transpose(shape):
  a = jnp.arange(np.prod(shape), dtype=jnp.float32).reshape(shape)
  np.testing.assert_array_equal(jax.jit(kernels.transpose_rows)(a), jnp.swapaxes(a, -1, -2))


@pytest.mark.parametrize('transposed', [False, True])
@pytest.mark.parametrize('d_in,d_out', [(16, 24), (24, 16), (5, 1)])  # Either operand narrower; odd widths.
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
def test_matmul_gradients_match_autodiff(dtype, d_in, d_out, transposed):
  rng = np.random.default_rng(1)
  x = jnp.asarray(rng.normal(size=(3, 5, d_in)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(d_out, d_in) if transposed else (d_in, d_out)), jnp.float32)
  w_in = lambda w: w.T if transposed else w
  plain = lambda x, w: jnp.matmul(x.astype(dtype), w_in(w).astype(dtype), preferred_element_type=jnp.float32)
  ours = lambda x, w: (kernels.matmul_transposed if transposed else kernels.matmul)(x, w, dtype)
  loss = lambda f: lambda x, w: jnp.sum(jnp.sin(f(x, w)))
  np.testing.assert_allclose(ours(x, w), plain(x, w), rtol=1e-5, atol=1e-5)
  got = jax.jit(jax.grad(loss(ours), argnums=(0, 1)))(x, w)
  want = jax.jit(jax.grad(loss(plain), argnums=(0, 1)))(x, w)
  tol = 1e-5 if dtype == jnp.float32 else 2e-2
  for g, h in zip(got, want):
    assert g.dtype == jnp.float32 and g.shape == h.shape
    np.testing.assert_allclose(g, h, rtol=tol, atol=tol * np.abs(h).max())


def dot_operand_dtypes(hlo_text: str) -> list[tuple[str, ...]]:
  """The element types of every dot's operands in compiled HLO text (instruction names are module-unique)."""
  types = dict(re.findall(r'%(\S+) = (\w+)\[', hlo_text))
  return [tuple(types[name] for name in re.findall(r'%([^,\s)]+)', operands))
          for operands in re.findall(r' dot\(([^)]*)\)', hlo_text)]


@pytest.mark.backend('cpu')  # XLA:CPU dot selection; conftest.py skips it elsewhere, also under CI=true.
def test_bf16_backward_dots_stay_bf16_on_cpu():
  """XLA:CPU upcasts a bf16 dot with a transposed operand to a ~3x slower float32 one; the hand-written
  backward passes of matmul, matmul_transposed and fused_attention must give it none."""
  rng = np.random.default_rng(0)
  x = jnp.asarray(rng.normal(size=(2, 8, 16)), jnp.float32)
  w = jnp.asarray(rng.normal(size=(16, 32)), jnp.float32)
  embedding = jnp.asarray(rng.normal(size=(11, 16)), jnp.float32)
  mask = jnp.tril(jnp.ones((8, 8), bool))[None, None].repeat(2, axis=0)

  def loss(x, w, embedding):
    h = kernels.matmul(x, w, jnp.bfloat16)  # [2, 8, 32]: as 4 heads of 8.
    q = h.reshape(2, 8, 4, 8)
    attended = kernels.fused_attention(q, q[:, :, :2], q[:, :, 2:], mask, jnp.bfloat16).reshape(2, 8, 32)
    back = kernels.matmul(attended, w.T, jnp.bfloat16)  # [2, 8, 16]: the wider-input branch.
    return jnp.sum(jnp.sin(kernels.matmul_transposed(back, embedding, jnp.bfloat16)))

  hlo = jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(x, w, embedding).compile().as_text()
  dtypes = dot_operand_dtypes(hlo)
  assert len(dtypes) >= 10  # 3 matmuls x 3 dots, 2 forward and 4 backward attention dots (some may fuse).
  assert all(t == ('bf16', 'bf16') for t in dtypes), dtypes


@pytest.mark.parametrize('bias_shape', [None, (2, 4, 6, 6), (1, 4, 6, 6)])  # T5's per-row bias; broadcast rows.
@pytest.mark.parametrize('dtype', [jnp.float32, jnp.bfloat16])
@pytest.mark.parametrize('kv_heads', [4, 2, 1])
def test_fused_attention_gradients_match_autodiff_of_the_reference(kv_heads, dtype, bias_shape):
  rng = np.random.default_rng(3)
  q = jnp.asarray(rng.normal(size=(2, 6, 4, 8)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(2, 6, kv_heads, 8)), jnp.float32)
  v = jnp.asarray(rng.normal(size=(2, 6, kv_heads, 8)), jnp.float32)
  bias = None if bias_shape is None else jnp.asarray(rng.normal(size=bias_shape), jnp.float32)
  segments = jnp.array([[1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 0, 0]])  # The zeros are padding queries and keys.
  mask = layers.attention_mask(segments, segments, causal=True)
  probe = jnp.asarray(rng.normal(size=(2, 6, 4, 8)), jnp.float32)

  def loss(attention):
    return lambda q, k, v, bias: jnp.sum(jnp.sin(attention(q, k, v, mask, dtype, bias)) * probe)

  got_out = kernels.fused_attention(q, k, v, mask, dtype, bias)
  want_out = layers.reference_attention(q, k, v, mask, dtype, bias)
  argnums = (0, 1, 2) if bias is None else (0, 1, 2, 3)
  got = jax.jit(jax.grad(loss(kernels.fused_attention), argnums=argnums))(q, k, v, bias)
  want = jax.jit(jax.grad(loss(layers.reference_attention), argnums=argnums))(q, k, v, bias)
  tol = 1e-5 if dtype == jnp.float32 else 3e-2
  np.testing.assert_allclose(got_out, want_out, rtol=tol, atol=tol)
  for g, w in zip(got, want):
    assert g.shape == w.shape
    np.testing.assert_allclose(g, w, rtol=tol, atol=tol * float(jnp.abs(w).max()))
