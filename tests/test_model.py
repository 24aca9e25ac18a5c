import dataclasses
import functools
import itertools
import re

import flax.linen as nn
import jax
from jax.extend import core as jax_core
import jax.numpy as jnp
import numpy as np
import pytest

from lm import config as config_lib
from lm import decode
from lm import flops
from lm import model as model_lib

TINY = dict(vocab_size=11, max_len=16, num_layers=2, d_model=16, num_heads=4, dtype='float32')  # Pinned numerics.


def make(**overrides):
  return model_lib.DecoderLM(model_lib.ModelConfig(**{**TINY, **overrides}))


def tokens(batch=2, length=8, seed=0):
  return jnp.asarray(np.random.default_rng(seed).integers(0, TINY['vocab_size'], (batch, length)), jnp.int32)


OPTIONS = [
    dict(position='learned'), dict(position='sinusoidal'), dict(position='rope'),
    dict(norm='rmsnorm'), dict(mlp='swiglu'), dict(num_kv_heads=2), dict(num_kv_heads=1),
    dict(tie_embeddings=False), dict(dtype='bfloat16'), dict(attention='xla'),
    dict(use_bias=False), dict(dropout=0.1), dict(head_dim=8, d_ff=24),
    dict(position='relative'), dict(mlp='relu'), dict(mlp='gated_gelu'), dict(scale_tied_logits=True),
    dict(remat='full'), dict(remat='save_matmuls'),
]


# Options that change how the model computes, not what it computes (without dropout).
SAME_FUNCTION = ('attention', 'dropout', 'remat')


def with_random_biases(params, seed=0):
  """`params` with every bias drawn at random: biases start at zero, where using them or not looks the same."""
  rng = np.random.default_rng(seed)
  return jax.tree_util.tree_map_with_path(
      lambda path, x: jnp.asarray(rng.normal(size=x.shape), x.dtype) if path[-1].key == 'bias' else x, params)


def remat_policies(fn, *args) -> list:
  """The policy of every remat (`jax.checkpoint`) equation in the jaxpr of `fn(*args)`, nested ones included."""
  found = []

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in ('checkpoint', 'remat', 'remat2'):  # The primitive's name differs across versions.
        found.append(eqn.params['policy'])
      for sub in jax_core.jaxprs_in_params(eqn.params):
        walk(sub)

  walk(jax.make_jaxpr(fn)(*args).jaxpr)
  return found


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
  if options == dict(use_bias=False):
    assert not [path for path, _ in jax.tree_util.tree_leaves_with_path(nn.meta.unbox(params))
                if path[-1].key == 'bias'], 'use_bias=False made biases'
  # Each option takes effect: against the default model (both with non-zero biases), the logits change, or for
  # the options in SAME_FUNCTION (and the default itself) stay; remat shows in the jaxpr instead.
  default = make()
  default_params = nn.meta.unbox(default.init(jax.random.PRNGKey(0), x)['params'])
  want = default.apply({'params': with_random_biases(default_params)}, x)
  got = model.apply({'params': with_random_biases(nn.meta.unbox(params))}, x)
  if model.config == default.config or set(options) & set(SAME_FUNCTION):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)
  else:
    assert float(jnp.max(jnp.abs(got - want))) > 1e-3 * float(jnp.max(jnp.abs(want))), f'{options} changed nothing'
  policies = remat_policies(lambda p: model.apply({'params': p}, x), params)
  remat = options.get('remat', 'none')
  assert policies == ([] if remat == 'none' else [model_lib.REMAT_POLICIES[remat]] * TINY['num_layers'])


def position_jacobian(model, x, segment_ids=None):
  """d(sum of logits at position i) / d(embedding at position j), reduced to a [B, L(i), L(j)] magnitude."""
  variables = model.init(jax.random.PRNGKey(0), x)

  def logits_per_position(perturbations):
    out = model.apply({'params': variables['params'], 'perturbations': perturbations}, x, segment_ids)
    return out.sum(-1)  # [B, L]

  jac = jax.jit(jax.jacrev(logits_per_position))(variables['perturbations'])['embedded']  # [B, L, B, L, D]
  jac = jnp.abs(jac).sum(-1)
  return np.stack([np.asarray(jac[b, :, b]) for b in range(x.shape[0])])


@pytest.mark.parametrize('options', [dict(), dict(position='rope', num_kv_heads=2),
                                     dict(attention='xla')])
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


@pytest.mark.parametrize('old, new', [('einsum', 'fused'), ('dot_product_attention', 'xla')])
def test_former_attention_names_build_the_same_model(old, new):
  """An old run's config.json (or command line) names attention as it was then called."""
  assert config_lib.ALIASES['model.attention'][old] == new
  from_old = model_lib.ModelConfig.from_config({**TINY, 'attention': old}, vocab_size=11, max_len=16)
  assert from_old == model_lib.ModelConfig.from_config({**TINY, 'attention': new}, vocab_size=11, max_len=16)
  assert from_old.attention == new


def test_bfloat16_stays_close_to_float32():
  x = tokens()
  f32, bf16 = make(), make(dtype='bfloat16')
  params = f32.init(jax.random.PRNGKey(0), x)['params']
  a = f32.apply({'params': params}, x)
  b = bf16.apply({'params': params}, x)
  assert float(jnp.max(jnp.abs(a - b))) < 0.05 * float(jnp.max(jnp.abs(a)))
  assert float(jnp.max(jnp.abs(a - b))) > 1e-4 * float(jnp.max(jnp.abs(a))), 'bfloat16 was not applied'


# ----------------------------------------------------------------------------------------------------------
# The size ladder.


@pytest.mark.parametrize('size', model_lib.SIZES)
def test_every_size_builds_with_its_advertised_non_embedding_params(size):
  """Kaplan's N of the param tree (shapes only) is the name's within 10% with the default GELU MLP, within 20%
  gated (8/3 rounded up to 64: the narrowest widths' MLPs grow most), and what lm/flops.py counts."""
  for mlp, tolerance in (('gelu', 0.1), ('swiglu', 0.2)):
    config = model_lib.ModelConfig(size=size, vocab_size=86, max_len=128, dtype='float32', mlp=mlp)
    init = functools.partial(model_lib.build_model(config).init_variables, target_len=8)
    params = jax.eval_shape(init, jax.random.PRNGKey(0))['params']
    counts = flops.count_param_tree(params)
    assert counts == flops.param_counts(config)
    assert abs(counts.non_embedding / model_lib.nominal_params(size) - 1) < tolerance, (mlp, counts)
  assert config.key_dim == (64 if config.d_model >= 256 else config.d_model // 4)


def test_keys_set_explicitly_beat_the_size():
  sized = model_lib.ModelConfig(size='10m', vocab_size=11, max_len=16)
  assert (sized.num_layers, sized.d_model, sized.num_heads) == model_lib.SIZES['10m'] == (6, 384, 6)
  shallow = model_lib.ModelConfig(size='10m', num_layers=2, vocab_size=11, max_len=16)
  assert (shallow.num_layers, shallow.d_model, shallow.num_heads) == (2, 384, 6)
  # A set value equal to the unsized default still wins: 0, not the default, means "the size's".
  assert model_lib.ModelConfig(size='1b', num_layers=4, vocab_size=11, max_len=16).num_layers == 4
  # From a config section, as an experiment file or --config.model.KEY=VALUE leaves it.
  c = config_lib.defaults()
  c.model.update(size='10m', num_heads=12)
  from_config = model_lib.ModelConfig.from_config(c.model, vocab_size=11, max_len=16)
  assert (from_config.num_layers, from_config.d_model, from_config.num_heads, from_config.key_dim) == (6, 384, 12, 32)
  unsized = model_lib.ModelConfig.from_config(config_lib.defaults().model, vocab_size=11, max_len=16)
  assert {key: getattr(unsized, key) for key in config_lib.UNSIZED_SHAPE} == config_lib.UNSIZED_SHAPE
  # Resolved, every shape key is set: rebuilding from the resolved values (config.json's) gives the same model.
  assert model_lib.ModelConfig(**dataclasses.asdict(from_config)) == from_config
  assert model_lib.shape_values(from_config) == {}


def test_an_unknown_size_names_the_choices():
  message = re.escape("model.size='2m' must be one of ('', '100k', '300k', '1m', '3m', '10m'")
  with pytest.raises(config_lib.ConfigError, match=message):
    model_lib.ModelConfig(size='2m', vocab_size=11, max_len=16)
  c = config_lib.defaults()
  c.model.size = '2m'
  with pytest.raises(config_lib.ConfigError, match=message):
    config_lib.validate(c)


def test_importing_the_model_pulls_in_no_data_libraries():
  import subprocess
  import sys
  code = ('import sys, lm.model; bad = [m for m in ("tensorflow_datasets", "grain", "tensorflow") '
          'if m in sys.modules]; assert not bad, bad')
  subprocess.run([sys.executable, '-c', code], check=True, timeout=120)


# ----------------------------------------------------------------------------------------------------------
# Encoder-decoder.

T5_LIKE = dict(position='relative', norm='rmsnorm', use_bias=False, mlp='gated_gelu', scale_tied_logits=True,
               embed_init_std=1.0, kernel_init='fan_in')


def make_encdec(**overrides):
  return model_lib.EncoderDecoder(model_lib.ModelConfig(
      **{**TINY, 'architecture': 'encoder_decoder', 'num_encoder_layers': 3, **overrides}))


def encdec_inputs(seed=0):
  rng = np.random.default_rng(seed)
  enc = jnp.asarray(rng.integers(1, TINY['vocab_size'], (2, 10)), jnp.int32)
  dec = jnp.asarray(rng.integers(1, TINY['vocab_size'], (2, 6)), jnp.int32)
  return enc, dec


@pytest.mark.parametrize('options', [dict(), T5_LIKE, dict(position='rope', num_kv_heads=2),
                                     dict(tie_embeddings=False, mlp='relu'), dict(remat='full'),
                                     dict(attention='xla', position='relative'),
                                     dict(T5_LIKE, pointer_generator=True)],
                         ids=lambda o: ','.join(f'{k}={v}' for k, v in o.items()) or 'default')
def test_encoder_decoder_options_build_and_run(options):
  model = make_encdec(**options)
  enc, dec = encdec_inputs()
  params = nn_unbox(model.init(jax.random.PRNGKey(0), enc, dec)['params'])
  assert sum(k.startswith('block_') for k in params['encoder']) == 3
  assert sum(k.startswith('block_') for k in params['decoder']) == 2
  assert 'cross_attention' in params['decoder']['block_0'] and 'cross_attention' not in params['encoder']['block_0']
  if options.get('position') == 'relative':  # One bias table per stack, shared by its layers.
    assert params['encoder']['relative_bias']['rel_embedding'].shape == (32, 4)
    assert params['decoder']['relative_bias']['rel_embedding'].shape == (32, 4)
  logits = model.apply({'params': params}, enc, dec)
  assert logits.shape == (2, 6, TINY['vocab_size']) and np.isfinite(np.asarray(logits)).all()


def test_t5_init_scales_kernels_by_fan_in():
  params = nn_unbox(make_encdec(**T5_LIKE, d_model=64).init(jax.random.PRNGKey(0), *encdec_inputs())['params'])
  kernels = {'/'.join(str(k.key) for k in path): leaf
             for path, leaf in jax.tree_util.tree_leaves_with_path(params) if path[-1].key == 'kernel'}
  assert len(kernels) == 3 * (4 + 3) + 2 * (4 + 4 + 3)  # Encoder: attention + gated MLP; decoder: + cross.
  for name, kernel in kernels.items():
    assert np.std(kernel) == pytest.approx(kernel.shape[0] ** -0.5, rel=0.2), name


@pytest.mark.parametrize('kernel_init, low, high', [('fan_in', 0.3, np.inf), ('normal', 0, 0.1)])
def test_t5_init_lets_the_encoder_move_the_decoder(kernel_init, low, high):
  """With T5's std-1 embeddings, std-0.02 kernels leave each block's output ~1% of the residual stream: the
  decoder's logits barely depend on the encoder, and training learns to ignore it (a T5-sized docstring model
  scored like an unconditional one). fan_in kernels give unit-scale block outputs, as in T5."""
  options = {**T5_LIKE, 'kernel_init': kernel_init, 'vocab_size': 100, 'd_model': 64}
  model = make_encdec(**options)
  rng = np.random.default_rng(0)
  enc = jnp.asarray(rng.integers(1, 100, (8, 10)), jnp.int32)
  dec = jnp.asarray(rng.integers(1, 100, (8, 6)), jnp.int32)
  params = nn_unbox(model.init(jax.random.PRNGKey(0), enc, dec)['params'])
  logits = model.apply({'params': params}, enc, dec)
  other_input = model.apply({'params': params}, jnp.roll(enc, 1, axis=0), dec)
  assert low < float(jnp.std(logits - other_input) / jnp.std(logits)) < high


def test_encoder_is_bidirectional_and_decoder_causal():
  model = make_encdec(**T5_LIKE)
  enc, dec = encdec_inputs()
  variables = model.init(jax.random.PRNGKey(0), enc, dec)

  def logits_sum(perturbations):
    out = model.apply({'params': variables['params'], 'perturbations': perturbations}, enc, dec)
    return out.sum(-1)  # [B, L_dec]

  jac = jax.jit(jax.jacrev(logits_sum))(variables['perturbations'])
  enc_jac = np.asarray(jnp.abs(jac['encoder']['embedded']).sum(-1))  # [B, L_dec, B, L_in]
  dec_jac = np.asarray(jnp.abs(jac['decoder']['embedded']).sum(-1))  # [B, L_dec, B, L_dec]
  for b in range(2):
    assert np.all(enc_jac[b, :, b] > 0), 'a decoder position ignores some encoder position'
    assert np.all(enc_jac[b, :, 1 - b] == 0) and np.all(dec_jac[b, :, 1 - b] == 0), 'rows leak'
    later = np.triu(np.ones((6, 6), bool), k=1)
    assert np.all(dec_jac[b, :, b][later] == 0), 'a decoder position depends on a later target token'
    assert np.all(dec_jac[b, :, b][~later] > 0)

  # Bidirectional: every encoder output depends on every input position, earlier and later.
  def encoded_sum(perturbations):
    out = model.apply({'params': variables['params'], 'perturbations': perturbations}, enc,
                      method=model_lib.EncoderDecoder.encode)
    return out.sum(-1)

  enc_self = jax.jit(jax.jacrev(encoded_sum))(variables['perturbations'])['encoder']['embedded']
  enc_self = np.asarray(jnp.abs(enc_self).sum(-1))
  assert all(np.all(enc_self[b, :, b] > 0) for b in range(2))


def test_encoder_decoder_segments_stay_apart():
  """Packed rows: decoder segment s sees only encoder segment s, and encoder padding (id 0) nothing."""
  model = make_encdec(**T5_LIKE)
  enc, dec = encdec_inputs()
  enc_seg = jnp.array([[1, 1, 1, 1, 2, 2, 2, 0, 0, 0]] * 2)
  dec_seg = jnp.array([[1, 1, 1, 2, 2, 2]] * 2)
  variables = model.init(jax.random.PRNGKey(0), enc, dec)

  def logits_sum(perturbations):
    out = model.apply({'params': variables['params'], 'perturbations': perturbations}, enc, dec, enc_seg, dec_seg)
    return out.sum(-1)

  jac = jax.jit(jax.jacrev(logits_sum))(variables['perturbations'])['encoder']['embedded']
  jac = np.asarray(jnp.abs(jac).sum(-1))[0, :, 0]
  for i, j in itertools.product(range(6), range(10)):
    same = int(dec_seg[0, i]) == int(enc_seg[0, j])
    assert (jac[i, j] > 0) == same, (i, j)


def test_pointer_generator_outputs_log_probs_that_copy_only_their_own_segments_tokens():
  """Its logits are normalised log-probs. With the gate open (all generate) they are the plain model's
  log-softmax; with it shut (all copy), the mass is the copy attention's: each decoder segment's on the tokens
  of its own encoder segment, none on another's or on padding."""
  model = make_encdec(**T5_LIKE, pointer_generator=True, vocab_size=40)
  enc = jnp.array([[1, 2, 3, 4, 5, 6, 7, 8, 9, 10]] * 2)
  enc_seg = jnp.array([[1, 1, 1, 1, 2, 2, 2, 0, 0, 0], [1] * 10])
  dec = jnp.array([[0, 11, 12, 0, 13, 14]] * 2)
  dec_seg = jnp.array([[1, 1, 1, 2, 2, 2], [1] * 6])
  params = nn_unbox(model.init(jax.random.PRNGKey(0), enc, dec)['params'])
  log_probs = model.apply({'params': params}, enc, dec, enc_seg, dec_seg)
  np.testing.assert_allclose(jax.nn.logsumexp(log_probs, axis=-1), 0.0, atol=1e-5)
  assert float(jnp.min(jnp.exp(log_probs[..., 11:]))) > 1e-6, 'the vocabulary softmax keeps every token possible'

  def with_gate_bias(bias):
    gate = {'kernel': jnp.zeros_like(params['decoder']['pointer_generator']['gate']['kernel']),
            'bias': jnp.full((1,), bias)}
    return {**params, 'decoder': {**params['decoder'],
                                  'pointer_generator': {**params['decoder']['pointer_generator'], 'gate': gate}}}

  plain = make_encdec(**T5_LIKE, vocab_size=40)
  plain_params = {**params, 'decoder': {k: v for k, v in params['decoder'].items() if k != 'pointer_generator'}}
  np.testing.assert_allclose(model.apply({'params': with_gate_bias(1e4)}, enc, dec, enc_seg, dec_seg),
                             jax.nn.log_softmax(plain.apply({'params': plain_params}, enc, dec, enc_seg, dec_seg)),
                             atol=1e-5)
  probs = np.asarray(jnp.exp(model.apply({'params': with_gate_bias(-1e4)}, enc, dec, enc_seg, dec_seg)))
  np.testing.assert_allclose(probs[0, :3, 1:5].sum(-1), 1.0, rtol=1e-5)  # Segment 1: tokens 1-4.
  np.testing.assert_allclose(probs[0, 3:, 5:8].sum(-1), 1.0, rtol=1e-5)  # Segment 2: tokens 5-7.
  np.testing.assert_allclose(probs[1, :, 1:11].sum(-1), 1.0, rtol=1e-5)  # One unpadded segment: all ten.
  assert np.all(probs[0, :3, 1:5] > 1e-3) and np.all(probs[0, 3:, 5:8] > 1e-3)


def test_pointer_generator_needs_an_encoder():
  with pytest.raises(ValueError, match='model.pointer_generator'):
    model_lib.ModelConfig(**TINY, pointer_generator=True)


# ----------------------------------------------------------------------------------------------------------
# KV-cache decoding equals full-sequence logits.


def cached_logits(logits_fn, cache, tokens):
  out = []
  for i in range(tokens.shape[1]):
    step, cache = logits_fn(tokens[:, i], jnp.asarray(i, jnp.int32), cache)
    out.append(step)
  return jnp.stack(out, axis=1)


@pytest.mark.parametrize('options', [dict(), dict(position='rope', num_kv_heads=2), dict(num_kv_heads=1),
                                     dict(position='relative', norm='rmsnorm'), dict(position='sinusoidal'),
                                     dict(attention='xla')],
                         ids=lambda o: ','.join(f'{k}={v}' for k, v in o.items()) or 'default')
def test_decoder_only_cache_equals_full_sequence(options):
  model = make(**options)
  x = tokens(length=8)
  params = model.init(jax.random.PRNGKey(0), x)['params']
  full = model.apply({'params': params}, x)
  cache = model.init_decode_cache(params, batch_size=2, max_decode_len=12)
  got = cached_logits(jax.jit(model.make_logits_fn(params)), cache, x)
  np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('options', [dict(), T5_LIKE, dict(position='rope', num_kv_heads=2),
                                     dict(T5_LIKE, pointer_generator=True)],
                         ids=lambda o: ','.join(f'{k}={v}' for k, v in o.items()) or 'default')
def test_encoder_decoder_cache_equals_full_sequence(options):
  model = make_encdec(**options)
  enc, dec = encdec_inputs()
  enc_seg = jnp.array([[1] * 10, [1] * 7 + [0] * 3])  # The second input is padded.
  params = model.init(jax.random.PRNGKey(0), enc, dec)['params']
  full = model.apply({'params': params}, enc, dec, enc_seg)
  cache, encoded = jax.jit(model.encode_for_decoding, static_argnames='max_decode_len')(
      params, enc, enc_seg, max_decode_len=9)
  assert all(leaf.shape[0] == 2 for leaf in jax.tree.leaves((cache, encoded))), 'every leaf must be batch-first'
  got = cached_logits(jax.jit(model.make_logits_fn(params, encoded)), cache, dec)
  np.testing.assert_allclose(got, full, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize('pointer_generator', [False, True])
def test_beam_search_over_the_encoder_decoder_scores_its_sequences_by_their_own_inputs(pointer_generator):
  """Beam search reorders the self-attention cache but reads the encoder state from make_logits_fn's closure,
  repeated per beam: each returned sequence must score exactly its teacher-forced log-prob given its own input."""
  model = make_encdec(**T5_LIKE, pointer_generator=pointer_generator)
  enc, _ = encdec_inputs()
  enc_seg = jnp.array([[1] * 10, [1] * 6 + [0] * 4])
  params = model.init(jax.random.PRNGKey(0), enc, enc[:, :6])['params']
  beams, length = 3, 5
  cache, encoded = jax.jit(model.encode_for_decoding, static_argnames='max_decode_len')(
      params, enc, enc_seg, max_decode_len=length)
  logits_fn = model.make_logits_fn(params, decode.expand_beams(encoded, beams))
  # An EOS id past the vocabulary is never chosen, and alpha 0: a score is the sequence's summed log-prob.
  seqs, scores = jax.jit(lambda cache: decode.beam_search(
      logits_fn, cache, jnp.zeros((2,), jnp.int32), num_beams=beams, max_new_tokens=length,
      eos_id=TINY['vocab_size'], alpha=0.0))(cache)
  assert not np.array_equal(seqs[0], seqs[1]), 'the two inputs should lead to different beams'
  forward = jax.jit(lambda *inputs: model.apply({'params': params}, *inputs))  # One compile for both rows.
  for b in range(2):
    decoder_inputs = jnp.concatenate([jnp.zeros((beams, 1), jnp.int32), seqs[b, :, :-1]], axis=1)
    logits = forward(jnp.repeat(enc[b:b + 1], beams, 0), decoder_inputs, jnp.repeat(enc_seg[b:b + 1], beams, 0))
    log_probs = jax.nn.log_softmax(logits.astype(jnp.float32))
    want = jnp.take_along_axis(log_probs, seqs[b][..., None], axis=-1)[..., 0].sum(-1)
    np.testing.assert_allclose(scores[b], want, rtol=1e-5, atol=1e-5)
    assert len({tuple(np.asarray(s)) for s in seqs[b]}) == beams, 'the beams must be distinct sequences'


def test_forward_reads_t5x_features_for_both_models():
  """`forward` equals `apply` given the batch's features explicitly, and each segment-id and position feature
  changes the output (packed documents, restarting positions, padding), so a forward that dropped one fails."""
  enc, dec = encdec_inputs()
  batch = {'encoder_input_tokens': enc, 'decoder_input_tokens': dec,
           'encoder_segment_ids': jnp.array([[1] * 6 + [2] * 4, [1] * 8 + [0] * 2]),
           'decoder_segment_ids': jnp.array([[1] * 3 + [2] * 3, [1] * 6]),
           'encoder_positions': jnp.array([[*range(6), *range(4)], [*range(10)]]),
           'decoder_positions': jnp.array([[*range(3), *range(3)], [*range(6)]])}
  for model in (make(), make_encdec()):
    variables = model.init_variables(jax.random.PRNGKey(0), target_len=6, input_len=10)
    params = nn_unbox(variables['params'])
    got = model.forward(params, batch)
    assert got.shape == (2, 6, TINY['vocab_size'])
    if isinstance(model, model_lib.EncoderDecoder):
      want = model.apply({'params': params}, enc, dec, batch['encoder_segment_ids'], batch['decoder_segment_ids'],
                         batch['encoder_positions'], batch['decoder_positions'])
      read = ('encoder_segment_ids', 'decoder_segment_ids', 'encoder_positions', 'decoder_positions')
    else:
      want = model.apply({'params': params}, dec, batch['decoder_segment_ids'], batch['decoder_positions'])
      read = ('decoder_segment_ids', 'decoder_positions')
    np.testing.assert_array_equal(got, want)
    for name in read:
      without = model.forward(params, {k: v for k, v in batch.items() if k != name})
      assert not np.allclose(without, got, atol=1e-5), f'{type(model).__name__}: {name} changes nothing'


def nn_unbox(tree):
  import flax.linen as nn
  return nn.meta.unbox(tree)
