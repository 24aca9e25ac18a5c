import jax.numpy as jnp
import numpy as np
import pytest

from lm import layers


def naive_attention(q, k, v, mask):
  """softmax(Q K^T / sqrt(d)) V per batch and head in numpy; k/v heads repeated for grouped queries."""
  b, l, h, d = q.shape
  rep = h // k.shape[2]
  k, v = np.repeat(k, rep, axis=2), np.repeat(v, rep, axis=2)
  out = np.zeros_like(q)
  for bi in range(b):
    for hi in range(h):
      s = q[bi, :, hi] @ k[bi, :, hi].T / np.sqrt(d)
      s = np.where(mask[bi, 0], s, -np.inf)
      p = np.exp(s - s.max(-1, keepdims=True))
      p /= p.sum(-1, keepdims=True)
      out[bi, :, hi] = p @ v[bi, :, hi]
  return out


IMPLEMENTATIONS = {'reference': layers.reference_attention, **layers.ATTENTION_IMPLEMENTATIONS}


@pytest.mark.parametrize('implementation', sorted(IMPLEMENTATIONS))
@pytest.mark.parametrize('kv_heads', [4, 2, 1])
def test_attention_matches_naive_softmax(implementation, kv_heads):
  rng = np.random.default_rng(0)
  q = rng.normal(size=(2, 6, 4, 8)).astype(np.float32)
  k = rng.normal(size=(2, 6, kv_heads, 8)).astype(np.float32)
  v = rng.normal(size=(2, 6, kv_heads, 8)).astype(np.float32)
  segments = np.array([[1, 1, 1, 2, 2, 2], [1, 1, 1, 1, 1, 0]])
  mask = np.asarray(layers.attention_mask(jnp.asarray(segments), jnp.asarray(segments), causal=True))
  got = IMPLEMENTATIONS[implementation](q, k, v, mask, jnp.float32)
  want = naive_attention(q, k, v, mask)
  valid = segments > 0  # A padding query attends to nothing; its output is unspecified.
  np.testing.assert_allclose(np.asarray(got)[valid], want[valid], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('causal', [True, False])
def test_length_masked_attention_equals_the_mask_on_one_document_rows(causal):
  """The cuDNN form (lengths + is_causal), run here through XLA, equals the segment mask on unpacked rows."""
  rng = np.random.default_rng(3)
  q = rng.normal(size=(2, 6, 4, 8)).astype(np.float32)
  k = rng.normal(size=(2, 6, 2, 8)).astype(np.float32)
  v = rng.normal(size=(2, 6, 2, 8)).astype(np.float32)
  segments = jnp.array([[1, 1, 1, 1, 1, 1], [1, 1, 1, 1, 0, 0]])
  got = layers.length_masked_attention(q, k, v, segments, segments, causal, jnp.float32, implementation='xla')
  mask = np.asarray(layers.attention_mask(segments, segments, causal=causal))
  want = naive_attention(q, k, v, mask)
  valid = np.asarray(segments) > 0
  np.testing.assert_allclose(np.asarray(got)[valid], want[valid], rtol=1e-5, atol=1e-5)
  np.testing.assert_array_equal(np.asarray(got)[~valid], 0.0)


def test_attention_mask_keeps_segments_and_causality():
  segments = jnp.array([[1, 1, 2, 2, 0]])
  mask = np.asarray(layers.attention_mask(segments, segments, causal=True))[0, 0]
  want = np.array([[1, 0, 0, 0, 0],
                   [1, 1, 0, 0, 0],
                   [0, 0, 1, 0, 0],
                   [0, 0, 1, 1, 0],
                   [0, 0, 0, 0, 0]], bool)
  np.testing.assert_array_equal(mask, want)


def test_rope_is_relative():
  """RoPE makes q.k depend on the offset only: shifting both positions leaves the score unchanged."""
  rng = np.random.default_rng(2)
  q = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
  k = jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32)
  score = lambda i, j: float(jnp.sum(layers.apply_rope(q, jnp.array([[i]]), layers.Rope(1e4)) *
                                     layers.apply_rope(k, jnp.array([[j]]), layers.Rope(1e4))))
  assert score(7, 3) == pytest.approx(score(17, 13), rel=1e-5)
  assert score(7, 3) != pytest.approx(score(7, 4), rel=1e-3)


def t5_relative_position_bucket(relative_position, bidirectional=True, num_buckets=32, max_distance=128):
  """mesh_tensorflow's `_relative_position_bucket` (the T5 paper's code), one scalar at a time."""
  ret = 0
  n = -relative_position
  if bidirectional:
    num_buckets //= 2
    ret += int(n < 0) * num_buckets
    n = abs(n)
  else:
    n = max(n, 0)
  max_exact = num_buckets // 2
  if n < max_exact:
    return ret + n
  val_if_large = max_exact + int(np.log(np.float32(n) / max_exact + np.finfo(np.float32).eps)
                                 / np.log(max_distance / max_exact) * (num_buckets - max_exact))
  return ret + min(val_if_large, num_buckets - 1)


OFFSETS = [-1000, -200, -128, -127, -100, -64, -33, -32, -31, -17, -16, -15, -9, -8, -7, -3, -1, 0, 1, 2, 7, 8, 9,
           15, 16, 17, 31, 32, 100, 127, 128, 129, 500]


@pytest.mark.parametrize('bidirectional', [True, False])
def test_relative_position_buckets_match_t5(bidirectional):
  got = np.asarray(layers.relative_position_bucket(jnp.asarray(OFFSETS), bidirectional))
  want = [t5_relative_position_bucket(o, bidirectional) for o in OFFSETS]
  np.testing.assert_array_equal(got, want)
  # Spot values worked by hand: key 1 before the query is bucket 1; 1 after, bidirectional, 16 + 1; keys past
  # max_distance share the last bucket; causal buckets ignore keys after the query.
  table = dict(zip(OFFSETS, got))
  assert table[0] == 0 and table[-1] == 1 and table[-1000] == table[-128] == (15 if bidirectional else 31)
  assert table[1] == (17 if bidirectional else 0) and table[500] == (31 if bidirectional else 0)


@pytest.mark.parametrize('implementation', sorted(IMPLEMENTATIONS))
def test_attention_bias_is_added_to_the_scores(implementation):
  rng = np.random.default_rng(4)
  q = rng.normal(size=(2, 5, 4, 8)).astype(np.float32)
  k = rng.normal(size=(2, 7, 2, 8)).astype(np.float32)
  v = rng.normal(size=(2, 7, 2, 8)).astype(np.float32)
  bias = rng.normal(size=(1, 4, 5, 7)).astype(np.float32)
  mask = np.ones((2, 1, 5, 7), bool)
  got = np.asarray(IMPLEMENTATIONS[implementation](q, k, v, mask, jnp.float32, bias))
  rep = np.repeat
  kf, vf = rep(k, 2, axis=2), rep(v, 2, axis=2)
  scores = np.einsum('blhk,bmhk->bhlm', q, kf) / np.sqrt(8) + bias
  probs = np.exp(scores - scores.max(-1, keepdims=True))
  probs /= probs.sum(-1, keepdims=True)
  np.testing.assert_allclose(got, np.einsum('bhlm,bmhk->blhk', probs, vf), rtol=1e-5, atol=1e-5)
