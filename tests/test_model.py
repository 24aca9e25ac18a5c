import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import model as model_lib

TINY = dict(vocab_size=11, max_len=16, num_layers=2, d_model=16, num_heads=4)


def make(**overrides):
  return model_lib.DecoderLM(model_lib.ModelConfig(**{**TINY, **overrides}))


def tokens(batch=2, length=8, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, TINY['vocab_size'], (batch, length)), jnp.int32)


OPTIONS = [
    dict(position='learned'), dict(position='sinusoidal'), dict(position='rope'),
    dict(norm='rmsnorm'), dict(mlp='swiglu'), dict(num_kv_heads=2), dict(num_kv_heads=1),
    dict(tie_embeddings=False), dict(dtype='bfloat16'), dict(attention='dot_product_attention'),
    dict(use_bias=False), dict(dropout=0.1), dict(head_dim=8, d_ff=24),
]


@pytest.mark.parametrize('options', OPTIONS, ids=lambda o: ','.join(f'{k}={v}' for k, v in o.items()))
def test_every_option_builds_and_runs(options):
  model = make(**options)
  x = tokens()
  params = model.init(jax.random.PRNGKey(0), x)['params']
  assert all(p.dtype == jnp.float32 for p in jax.tree.leaves(params))
  logits = model.apply({'params': params}, x, deterministic=False, rngs={'dropout': jax.random.PRNGKey(1)})
  assert logits.shape == (2, 8, TINY['vocab_size']) and logits.dtype == jnp.float32
  assert np.isfinite(np.asarray(logits)).all()
  if options.get('dropout'):
    again = model.apply({'params': params}, x, deterministic=False, rngs={'dropout': jax.random.PRNGKey(2)})
    assert not np.allclose(logits, again), 'dropout had no effect'
    np.testing.assert_allclose(model.apply({'params': params}, x), model.apply({'params': params}, x))
  if options == dict(tie_embeddings=False):
    assert 'unembed' in params
  if options.get('position', 'learned') != 'learned':
    assert 'position_embedding' not in params


def position_jacobian(model, x, segment_ids=None):
  """d(sum of logits at position i) / d(embedding at position j), reduced to a [B, L(i), L(j)] magnitude."""
  variables = model.init(jax.random.PRNGKey(0), x)

  def logits_per_position(perturbations):
    out = model.apply({'params': variables['params'], 'perturbations': perturbations}, x, segment_ids)
    return out.sum(-1)  # [B, L]

  jac = jax.jacrev(logits_per_position)(variables['perturbations'])['embedded']  # [B, L, B, L, D]
  jac = jnp.abs(jac).sum(-1)
  return np.stack([np.asarray(jac[b, :, b]) for b in range(x.shape[0])])


@pytest.mark.parametrize('options', [dict(), dict(position='rope', num_kv_heads=2),
                                     dict(attention='dot_product_attention')])
def test_causal_gradient_is_exactly_zero_for_later_tokens(options):
  jac = position_jacobian(make(**options), tokens())
  length = jac.shape[1]
  later = np.triu(np.ones((length, length), bool), k=1)
  assert np.all(jac[:, later] == 0.0), 'a position depends on a later token'
  assert np.all(jac[:, ~later] > 0.0), 'a position ignores an earlier token of its own document'


def test_no_attention_across_segments():
  segment_ids = jnp.array([[1, 1, 1, 2, 2, 2, 2, 2], [1, 1, 1, 1, 1, 1, 1, 1]])
  jac = position_jacobian(make(), tokens(), segment_ids)
  for i, j in itertools.product(range(8), range(8)):
    same = segment_ids[0, i] == segment_ids[0, j]
    if not same:
      assert jac[0, i, j] == 0.0, f'position {i} depends on position {j} of another document'
  assert jac[1, 7, 0] > 0.0


def test_config_validation_names_the_key():
  with pytest.raises(ValueError, match='num_heads=3 does not divide model.d_model=16'):
    make(num_heads=3)
  with pytest.raises(ValueError, match='num_kv_heads=3'):
    make(num_kv_heads=3)
  with pytest.raises(ValueError, match="model.norm='batchnorm'"):
    make(norm='batchnorm')
  with pytest.raises(ValueError, match='unknown model config keys'):
    model_lib.ModelConfig.from_config({**TINY, 'num_layer': 2}, vocab_size=11, max_len=16)


def test_bfloat16_stays_close_to_float32():
  x = tokens()
  f32, bf16 = make(), make(dtype='bfloat16')
  params = f32.init(jax.random.PRNGKey(0), x)['params']
  a = f32.apply({'params': params}, x)
  b = bf16.apply({'params': params}, x)
  assert float(jnp.max(jnp.abs(a - b))) < 0.05 * float(jnp.max(jnp.abs(a)))


def test_importing_the_model_pulls_in_no_data_libraries():
  import subprocess
  import sys
  code = ('import sys, lm.model; bad = [m for m in ("tensorflow_datasets", "grain", "tensorflow") '
          'if m in sys.modules]; assert not bad, bad')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)
