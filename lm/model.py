"""Models: `ModelConfig`, the decoder-only `DecoderLM` and the T5-style `EncoderDecoder`, built from the same
`layers.py` blocks, and the size ladder `SIZES` (model.size). Each model's entry points are its methods:
`init_variables`, `forward` on a batch, and for `lm/decode.py` a cache (`DecoderLM.init_decode_cache`,
`EncoderDecoder.encode_for_decoding`) and `make_logits_fn`. Shape letters as in `layers.py`."""
from __future__ import annotations

import dataclasses
import functools
from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm import config as config_lib
from lm import hardware
from lm import layers

Array = jax.Array
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
ACTIVATION_AXES = ('batch', 'length', 'act_embed')  # Logical axes of the residual stream [B, L, D].
# Activation rematerialisation: what a block keeps for the backward pass.
REMAT_POLICIES = {
    'full': None,  # Nothing: recompute the whole block.
    'save_matmuls': jax.checkpoint_policies.save_only_these_names('matmul'),  # Keep dense outputs.
}



class Size(NamedTuple):
  """The keys a model.size fills (where the config leaves them at 0)."""
  num_layers: int
  d_model: int
  num_heads: int


# The size ladder (model.size). A name is the nominal non-embedding parameter count (Kaplan's N) of the decoder-only
# model with a 4x GELU MLP, each within 10% (tests/test_model.py), in steps of about 3x. Heads are 64 wide from
# d_model 256 up, as in the Chinchilla and Pythia ladders; narrower models keep 4 heads of d_model / 4 (Pythia-14m:
# 4 of 32). Depth grows with width, d_model / num_layers between 20 and 100 (Chinchilla's small models: 64; Pythia:
# 21-128). 10m is nanoGPT's Shakespeare model, 300m GPT-2 medium's and Pythia-410m's shape. The MLP is
# `ModelConfig.hidden_dim`'s: 4x for GELU and ReLU, 8/3 rounded up to 64 for the gated ones, which adds up to 13% at
# the narrowest widths. An encoder-decoder has num_layers blocks in each stack. `./run.sh sizes` prints the table.
SIZES = {
    '100k': Size(2, 64, 4),
    '300k': Size(4, 80, 4),
    '1m': Size(5, 128, 4),
    '3m': Size(5, 224, 4),
    '10m': Size(6, 384, 6),
    '30m': Size(9, 512, 8),
    '100m': Size(14, 768, 12),
    '300m': Size(24, 1024, 16),
    '1b': Size(20, 2048, 32),
    '3b': Size(32, 2816, 44),
}
_SUFFIXES = {'k': 1e3, 'm': 1e6, 'b': 1e9}


def nominal_params(size: str) -> float:
  """The non-embedding parameter count a size's name stands for: '300k' -> 3e5, '1b' -> 1e9."""
  return float(size[:-1]) * _SUFFIXES[size[-1]]


def shape_values(model_config: Any) -> dict[str, int]:
  """The shape keys `model_config` (read by attribute) leaves at 0, with the values they take: its model.size's,
  or without one config.UNSIZED_SHAPE's. Keys it sets are not in it: they beat the size."""
  config_lib.check_choices('model', model_config)  # Names an unknown size before the ladder is read.
  shape = SIZES[model_config.size]._asdict() if model_config.size else config_lib.UNSIZED_SHAPE
  return {key: value for key, value in shape.items() if not getattr(model_config, key)}


@dataclasses.dataclass(frozen=True)
class ModelConfig(config_lib.Model):
  """config.model resolved (the shape filled in from model.size where left at 0, vocab_size and max_len filled in,
  dtype 'auto' resolved by lm/hardware.py) and checked; lm/config.py declares each field. Derive by `.replace`;
  on a resolved config, `.replace(size=...)` changes no shape key: they are all set."""

  def __post_init__(self):
    object.__setattr__(self, 'attention', config_lib.resolve_alias('model.attention', self.attention))
    object.__setattr__(self, 'dtype', hardware.resolve_dtype(self.dtype))
    for key, value in shape_values(self).items():
      object.__setattr__(self, key, value)
    config_lib.check_model(self)
    for key in ('vocab_size', 'max_len'):
      config_lib.check(getattr(self, key) > 0, f'model.{key}', getattr(self, key), 'must be positive')

  @property
  def kv_heads(self) -> int:
    return self.num_kv_heads or self.num_heads

  @property
  def key_dim(self) -> int:
    return self.head_dim or self.d_model // self.num_heads

  @property
  def hidden_dim(self) -> int:
    if self.d_ff:
      return self.d_ff
    if self.mlp in ('swiglu', 'gated_gelu'):  # Same parameter count as a 4x GELU MLP, rounded to 64.
      return -(-8 * self.d_model // 3 // 64) * 64
    return 4 * self.d_model

  @property
  def encoder_layers(self) -> int:
    return self.num_encoder_layers or self.num_layers

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  def replace(self, **changes) -> 'ModelConfig':
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_config(cls, model_config: Any, *, vocab_size: int, max_len: int) -> 'ModelConfig':
    """Builds from `config.model`; `vocab_size`/`max_len` fill the fields the config leaves at 0."""
    values = dict(model_config)
    config_lib.check(not values['vocab_size'] or values['vocab_size'] >= vocab_size, 'model.vocab_size',
                     values['vocab_size'], f"is smaller than the tokenizer's {vocab_size}")
    values['vocab_size'] = values['vocab_size'] or vocab_size
    values['max_len'] = values['max_len'] or max_len
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    config_lib.check(not unknown, 'model', sorted(unknown), 'holds unknown model config keys')
    return cls(**values)


def rope_settings(config: ModelConfig) -> layers.Rope:
  c = config
  return layers.Rope(c.rope_base, c.rope_scaling, c.rope_scaling_factor, c.rope_original_max_len,
                     c.rope_low_freq_factor, c.rope_high_freq_factor)


class Block(nn.Module):
  """Pre-norm Transformer block: x + Attn(Norm(x)), [x + CrossAttn(Norm(x), encoded)], then x + Mlp(Norm(x)).

  Encoder blocks are not causal; decoder blocks of an encoder-decoder (`cross=True`) attend to the encoder
  output. `bias` is T5's relative position bias (training), `bias_fn` makes it for one decoding step.
  `deterministic` (no dropout) and `decode` are attributes, not call arguments: `nn.remat` would have to be told
  their positions as static arguments.
  """
  config: ModelConfig
  causal: bool = True
  cross: bool = False
  deterministic: bool = True
  decode: bool = False

  @nn.compact
  def __call__(self, x: Array, segment_ids: Array, positions: Array, *, bias: Array | None = None,
               encoded: Array | None = None, encoder_segment_ids: Array | None = None,
               decode_index: Array | None = None, bias_fn=None) -> Array:
    c = self.config
    attention = functools.partial(
        layers.Attention, num_heads=c.num_heads, num_kv_heads=c.kv_heads, head_dim=c.key_dim,
        implementation=c.attention, use_bias=c.use_bias, scale_scores=c.scale_attention, dtype=c.compute_dtype,
        kernel_init=layers.KERNEL_INITS[c.kernel_init])
    h = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    h = attention(causal=self.causal, rope=rope_settings(c) if c.position == 'rope' else None,
                  name='attention')(h, segment_ids, positions, bias=bias, bias_fn=bias_fn, decode=self.decode,
                                    decode_index=decode_index)
    x = x + nn.Dropout(c.dropout)(h, deterministic=self.deterministic)
    if self.cross:
      h = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
      h = attention(causal=False, name='cross_attention')(
          h, segment_ids, positions, kv=encoded, kv_segment_ids=encoder_segment_ids, decode=self.decode)
      x = x + nn.Dropout(c.dropout)(h, deterministic=self.deterministic)
    h = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    h = layers.Mlp(c.hidden_dim, c.mlp, c.use_bias, c.compute_dtype, layers.KERNEL_INITS[c.kernel_init],
                   name='mlp')(h)
    return x + nn.Dropout(c.dropout)(h, deterministic=self.deterministic)


def _blocks(config: ModelConfig, num_layers: int, x: Array, segment_ids: Array, positions: Array, *,
            deterministic: bool, causal: bool = True, cross: bool = False, decode: bool = False,
            bias: Array | None = None, bias_fn=None, encoded: Array | None = None,
            encoder_segment_ids: Array | None = None, decode_index: Array | None = None) -> Array:
  """A stack's `num_layers` blocks, named block_<i> in the calling module, rematerialised as config.remat says
  (decoding keeps no activations, so never there)."""
  block = Block
  if config.remat != 'none' and not decode:
    block = nn.remat(Block, policy=REMAT_POLICIES[config.remat])
  for i in range(num_layers):
    x = block(config, causal=causal, cross=cross, deterministic=deterministic, decode=decode, name=f'block_{i}')(
        x, segment_ids, positions, bias=bias, bias_fn=bias_fn, encoded=encoded,
        encoder_segment_ids=encoder_segment_ids, decode_index=decode_index)
    x = nn.with_logical_constraint(x, ACTIVATION_AXES)
  return x


def _default_ids(tokens: Array, segment_ids: Array | None, positions: Array | None) -> tuple[Array, Array]:
  """One unpadded document per row unless told otherwise."""
  if segment_ids is None:
    segment_ids = jnp.ones_like(tokens)
  if positions is None:
    positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
  return segment_ids, positions


def _embedding_init(config: ModelConfig):
  return nn.with_logical_partitioning(nn.initializers.normal(config.embed_init_std), ('vocab', 'embed'))


def _embed(config: ModelConfig, embedding: Array, tokens: Array, positions: Array, module: nn.Module,
           deterministic: bool) -> Array:
  """Token embedding plus learned or sinusoidal positions (made in `module`), constrained and dropped out."""
  c = config
  x = jnp.take(embedding, tokens, axis=0)
  if c.position == 'learned':
    table = module.param('position_embedding', nn.with_logical_partitioning(layers.default_kernel_init,
                                                                            (None, 'embed')),
                         (c.max_len, c.d_model), jnp.float32)
    x = x + jnp.take(table, positions, axis=0)
  elif c.position == 'sinusoidal':
    x = x + layers.sinusoidal_positions(positions, c.d_model)
  x = nn.with_logical_constraint(x, ACTIVATION_AXES)
  x = module.perturb('embedded', x)  # A zero hook: gradients w.r.t. it test causality per position.
  return nn.Dropout(c.dropout)(x, deterministic=deterministic)


def _relative_bias(config: ModelConfig, positions: Array, *, bidirectional: bool,
                   decode: bool = False) -> tuple[Array | None, nn.Module | None]:
  """T5's relative position bias, one per stack shared by its layers, made in the calling module as
  'relative_bias': (the bias [B, H, L, L] of a full pass, None while decoding; the module, which makes each
  decoding step's bias, None otherwise). Both None without relative positions."""
  c = config
  if c.position != 'relative':
    return None, None
  make_bias = layers.RelativePositionBias(c.num_heads, bidirectional, c.relative_buckets, c.relative_max_distance,
                                          name='relative_bias')
  return (None, make_bias) if decode else (make_bias(positions, positions), None)


def _logits(config: ModelConfig, x: Array, embedding: Array) -> Array:
  """Output projection: the embedding's transpose (T5 scales it by d_model^-0.5 first) or, untied, its own
  kernel 'unembed' (made in the calling module)."""
  c = config
  if c.tie_embeddings:
    logits = layers.tied_logits(x * c.d_model**-0.5 if c.scale_tied_logits else x, embedding, c.compute_dtype)
  else:
    logits = layers.Dense(c.vocab_size, kernel_axes=('embed', 'vocab'), use_bias=False, dtype=c.compute_dtype,
                          kernel_init=layers.KERNEL_INITS[c.kernel_init], name='unembed')(x)
  # Split by batch like the inputs: [B, L, V] is the largest activation, never to be gathered whole.
  return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))


def _dropout_args(rng: Array | None) -> dict:
  """`apply` keywords: no dropout for `rng` None, else dropout from that key."""
  return dict(deterministic=rng is None, rngs=None if rng is None else {'dropout': rng})


def _step_inputs(tokens: Array, index: Array) -> tuple[Array, Array, Array]:
  """One decoding step's (tokens [N, 1], segment ids, positions) for `tokens[N]` at position `index`."""
  tokens = tokens[:, None]
  return tokens, jnp.ones_like(tokens), jnp.full(tokens.shape, index, jnp.int32)


class DecoderLM(nn.Module):
  """Decoder-only Transformer LM: tokens `[B, L]` -> float32 logits `[B, L, V]`.

  `segment_ids` (0 = padding) keep attention inside each packed document; `positions` restart per document.
  Both default to a single unpadded document per row. `decode=True`: see `layers.Attention` (KV cache).
  The methods below `__call__` are the entry points of training and decoding, called on the unbound model.
  """
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None = None, positions: Array | None = None,
               *, deterministic: bool = True, decode: bool = False, decode_index: Array | None = None) -> Array:
    c = self.config
    segment_ids, positions = _default_ids(tokens, segment_ids, positions)
    embedding = self.param('embedding', _embedding_init(c), (c.vocab_size, c.d_model), jnp.float32)
    x = _embed(c, embedding, tokens, positions, self, deterministic)
    bias, bias_fn = _relative_bias(c, positions, bidirectional=False, decode=decode)
    x = _blocks(c, c.num_layers, x, segment_ids, positions, deterministic=deterministic, decode=decode, bias=bias,
                bias_fn=bias_fn, decode_index=decode_index)
    x = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    return _logits(c, x, embedding)

  @nn.nowrap
  def init_variables(self, rng: Array, *, target_len: int, input_len: int = 0) -> dict:
    """`init` on zero tokens of `target_len` (params keep their logical-axis boxes). `input_len` is an
    encoder-decoder's: ignored, so that both models init alike."""
    del input_len
    return self.init(rng, jnp.zeros((1, target_len), jnp.int32))

  @nn.nowrap
  def forward(self, params: Any, batch: dict[str, Array], *, rng: Array | None = None) -> Array:
    """Logits `[B, L, V]` for a batch with T5X feature names; `rng` None: no dropout, else its key."""
    return self.apply({'params': params}, batch['decoder_input_tokens'], batch.get('decoder_segment_ids'),
                      batch.get('decoder_positions'), **_dropout_args(rng))

  @nn.nowrap
  def init_decode_cache(self, params: Any, batch_size: int, max_decode_len: int) -> dict:
    """An empty KV cache for `max_decode_len` positions (every leaf batch-first)."""
    def make():
      tokens = jnp.zeros((batch_size, max_decode_len), jnp.int32)
      return self.apply({'params': params}, tokens, decode=True, mutable=['cache'])[1]['cache']
    return {'decoder': jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), jax.eval_shape(make))}

  @nn.nowrap
  def make_logits_fn(self, params: Any):
    """`logits_fn(tokens[N], index, cache) -> (logits[N, V], cache)` for lm/decode.py: feeds one token per row
    at position `index` through the cached model (cache from `init_decode_cache`)."""
    def logits_fn(tokens: Array, index: Array, cache: dict) -> tuple[Array, dict]:
      tokens, segment_ids, positions = _step_inputs(tokens, index)
      logits, new = self.apply({'params': params, 'cache': cache['decoder']}, tokens, segment_ids, positions,
                               decode=True, decode_index=index, mutable=['cache'])
      return logits[:, 0], {'decoder': new['cache']}
    return logits_fn

  @nn.nowrap
  def make_prefill_fn(self, params: Any):
    """`prefill_fn(tokens[N, T], cache) -> cache` for lm/decode.py: positions 0 .. T-1 in one pass, not T steps."""
    def prefill_fn(tokens: Array, cache: dict) -> dict:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1], dtype=jnp.int32), tokens.shape)
      _, new = self.apply({'params': params, 'cache': cache['decoder']}, tokens, jnp.ones_like(tokens), positions,
                          decode=True, decode_index=jnp.zeros((), jnp.int32), mutable=['cache'])
      return {'decoder': new['cache']}
    return prefill_fn


class Encoder(nn.Module):
  """Bidirectional stack over the input tokens (the encoder-decoder's first half): `[B, L_in, D]` out."""
  config: ModelConfig

  @nn.compact
  def __call__(self, embedding: Array, tokens: Array, segment_ids: Array, positions: Array,
               deterministic: bool) -> Array:
    c = self.config
    x = _embed(c, embedding, tokens, positions, self, deterministic)
    bias, _ = _relative_bias(c, positions, bidirectional=True)
    x = _blocks(c, c.encoder_layers, x, segment_ids, positions, deterministic=deterministic, causal=False,
                bias=bias)
    x = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    return nn.Dropout(c.dropout)(x, deterministic=deterministic)


class Decoder(nn.Module):
  """Causal stack with cross-attention over the encoder output (the encoder-decoder's second half); with
  `pointer_generator`, its output distribution also copies `encoder_tokens` (see layers.PointerGenerator)."""
  config: ModelConfig

  @nn.compact
  def __call__(self, embedding: Array, encoded: Array | None, encoder_segment_ids: Array, tokens: Array,
               segment_ids: Array, positions: Array, deterministic: bool, decode: bool = False,
               decode_index: Array | None = None, encoder_tokens: Array | None = None) -> Array:
    c = self.config
    x = _embed(c, embedding, tokens, positions, self, deterministic)
    bias, bias_fn = _relative_bias(c, positions, bidirectional=False, decode=decode)
    x = _blocks(c, c.num_layers, x, segment_ids, positions, deterministic=deterministic, cross=True, decode=decode,
                bias=bias, bias_fn=bias_fn, encoded=encoded, encoder_segment_ids=encoder_segment_ids,
                decode_index=decode_index)
    x = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    x = nn.Dropout(c.dropout)(x, deterministic=deterministic)
    logits = _logits(c, x, embedding)
    if c.pointer_generator:
      logits = layers.PointerGenerator(c.use_bias, c.compute_dtype, layers.KERNEL_INITS[c.kernel_init],
                                       name='pointer_generator')(
          x, logits, encoded, encoder_tokens, segment_ids, encoder_segment_ids, decode=decode)
      logits = nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))
    return logits


class EncoderDecoder(nn.Module):
  """T5-style encoder-decoder: a bidirectional encoder over the inputs and a causal decoder with
  cross-attention over its output, sharing the token embedding (and, tied, the output projection).

  `__call__(encoder_tokens, decoder_tokens, ...)` -> float32 logits `[B, L_dec, V]`. `encode` and `decode` are
  the two halves, for decoding: the encoder runs once per input. Relative position biases are one per stack,
  shared by its layers, as in T5. The methods below `__call__` are the entry points of training and decoding,
  called on the unbound model.
  """
  config: ModelConfig

  def setup(self):
    c = self.config
    self.embedding = self.param('embedding', _embedding_init(c), (c.vocab_size, c.d_model), jnp.float32)
    self.encoder = Encoder(c)
    self.decoder = Decoder(c)

  def encode(self, tokens: Array, segment_ids: Array | None = None, positions: Array | None = None, *,
             deterministic: bool = True) -> Array:
    """Input tokens `[B, L_in]` -> encoder output `[B, L_in, D]` (after the final norm)."""
    segment_ids, positions = _default_ids(tokens, segment_ids, positions)
    return self.encoder(self.embedding, tokens, segment_ids, positions, deterministic)

  def decode(self, encoded: Array | None, encoder_segment_ids: Array, tokens: Array,
             segment_ids: Array | None = None, positions: Array | None = None, *, deterministic: bool = True,
             decode: bool = False, decode_index: Array | None = None,
             encoder_tokens: Array | None = None) -> Array:
    """Decoder tokens `[B, L]` (targets shifted right, start token 0) -> logits `[B, L, V]`.

    `encoder_tokens` (the input tokens) are read only by a pointer-generator model, which copies them. While
    decoding, `encoded` and `encoder_tokens` may be None: the steps read the values cached by the first call.
    """
    segment_ids, positions = _default_ids(tokens, segment_ids, positions)
    return self.decoder(self.embedding, encoded, encoder_segment_ids, tokens, segment_ids, positions,
                        deterministic, decode, decode_index, encoder_tokens)

  def __call__(self, encoder_tokens: Array, decoder_tokens: Array, encoder_segment_ids: Array | None = None,
               decoder_segment_ids: Array | None = None, encoder_positions: Array | None = None,
               decoder_positions: Array | None = None, *, deterministic: bool = True) -> Array:
    if encoder_segment_ids is None:
      encoder_segment_ids = jnp.ones_like(encoder_tokens)
    encoded = self.encode(encoder_tokens, encoder_segment_ids, encoder_positions, deterministic=deterministic)
    return self.decode(encoded, encoder_segment_ids, decoder_tokens, decoder_segment_ids, decoder_positions,
                       deterministic=deterministic, encoder_tokens=encoder_tokens)

  @nn.nowrap
  def init_variables(self, rng: Array, *, target_len: int, input_len: int) -> dict:
    """`init` on zero tokens: `input_len` encoder, `target_len` decoder (params keep their logical-axis boxes)."""
    return self.init(rng, jnp.zeros((1, input_len), jnp.int32), jnp.zeros((1, target_len), jnp.int32))

  @nn.nowrap
  def forward(self, params: Any, batch: dict[str, Array], *, rng: Array | None = None) -> Array:
    """Logits `[B, L_dec, V]` for a batch with T5X feature names; `rng` None: no dropout, else its key."""
    return self.apply({'params': params}, batch['encoder_input_tokens'], batch['decoder_input_tokens'],
                      batch.get('encoder_segment_ids'), batch.get('decoder_segment_ids'),
                      batch.get('encoder_positions'), batch.get('decoder_positions'), **_dropout_args(rng))

  @nn.nowrap
  def encode_for_decoding(self, params: Any, encoder_input_tokens: Array, encoder_segment_ids: Array,
                          max_decode_len: int) -> tuple[dict, dict]:
    """Runs the encoder once and returns (cache, encoded) for `make_logits_fn(params, encoded)`.

    `cache`: empty self-attention KV caches for `max_decode_len` positions, which each step writes. `encoded`: the
    cross-attention keys/values of the encoder output (and a pointer generator's copy keys and tokens) and its
    segment ids (its padding mask), which steps only read, so they stay out of the cache that beam search
    reorders (repeat them per beam with decode.expand_beams first). Every leaf is batch-first."""
    encoded = self.apply({'params': params}, encoder_input_tokens, encoder_segment_ids, method=EncoderDecoder.encode)
    tokens = jnp.zeros((encoder_input_tokens.shape[0], max_decode_len), jnp.int32)
    _, variables = self.apply({'params': params}, encoded, encoder_segment_ids, tokens, decode=True,
                              encoder_tokens=encoder_input_tokens, method=EncoderDecoder.decode,
                              mutable=['cache', layers.ENCODER_KV])
    return {'decoder': variables['cache']}, {'kv': variables[layers.ENCODER_KV], 'segment_ids': encoder_segment_ids}

  @nn.nowrap
  def make_logits_fn(self, params: Any, encoded: dict):
    """`logits_fn(tokens[N], index, cache) -> (logits[N, V], cache)` for lm/decode.py: feeds one token per row
    at position `index` through the cached decoder, over `encoded` (from encode_for_decoding, with N rows)."""
    def logits_fn(tokens: Array, index: Array, cache: dict) -> tuple[Array, dict]:
      tokens, segment_ids, positions = _step_inputs(tokens, index)
      variables = {'params': params, 'cache': cache['decoder'], layers.ENCODER_KV: encoded['kv']}
      logits, new = self.apply(variables, None, encoded['segment_ids'], tokens, segment_ids, positions,
                               decode=True, decode_index=index, method=EncoderDecoder.decode, mutable=['cache'])
      return logits[:, 0], {'decoder': new['cache']}
    return logits_fn


def build_model(config: ModelConfig) -> DecoderLM | EncoderDecoder:
  return EncoderDecoder(config) if config.architecture == 'encoder_decoder' else DecoderLM(config)
