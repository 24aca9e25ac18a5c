"""Models: `ModelConfig` and the decoder-only `DecoderLM`. Shape letters as in `layers.py`."""
from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from lm import layers

Array = jax.Array
DTYPES = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}
_CHOICES = {
    'position': ('learned', 'sinusoidal', 'rope'),
    'norm': ('layernorm', 'rmsnorm'),
    'mlp': ('gelu', 'swiglu'),
    'dtype': tuple(DTYPES),
    'attention': (*layers.ATTENTION_IMPLEMENTATIONS, 'cudnn'),
    'remat': ('none', 'full', 'save_matmuls'),
}
ACTIVATION_AXES = ('batch', 'length', 'act_embed')  # Logical axes of the residual stream [B, L, D].
# Activation rematerialisation: what a block keeps for the backward pass.
REMAT_POLICIES = {
    'full': None,  # Nothing: recompute the whole block.
    'save_matmuls': jax.checkpoint_policies.save_only_these_names('matmul'),  # Keep dense outputs.
}


@dataclasses.dataclass(frozen=True)
class ModelConfig:
  """A resolved, validated model config; `experiments/base.py` documents each field. Derive by `.replace`."""
  vocab_size: int
  max_len: int
  num_layers: int = 4
  d_model: int = 128
  num_heads: int = 4
  num_kv_heads: int = 0
  head_dim: int = 0
  d_ff: int = 0
  position: str = 'learned'
  rope_base: float = 10000.0
  norm: str = 'layernorm'
  norm_eps: float = 1e-5
  mlp: str = 'gelu'
  use_bias: bool = True
  dropout: float = 0.0
  tie_embeddings: bool = True
  dtype: str = 'float32'
  attention: str = 'einsum'
  remat: str = 'none'

  def __post_init__(self):
    for key, choices in _CHOICES.items():
      if getattr(self, key) not in choices:
        raise ValueError(f'model.{key}={getattr(self, key)!r}: expected one of {choices}')
    for key in ('vocab_size', 'max_len', 'num_layers', 'd_model', 'num_heads'):
      if getattr(self, key) <= 0:
        raise ValueError(f'model.{key}={getattr(self, key)} must be positive')
    for key in ('num_kv_heads', 'head_dim', 'd_ff'):
      if getattr(self, key) < 0:
        raise ValueError(f'model.{key}={getattr(self, key)} must be >= 0 (0 picks the default)')
    if not self.head_dim and self.d_model % self.num_heads:
      raise ValueError(f'model.num_heads={self.num_heads} does not divide model.d_model={self.d_model}')
    if self.num_heads % self.kv_heads:
      raise ValueError(f'model.num_kv_heads={self.num_kv_heads} does not divide model.num_heads={self.num_heads}')
    if self.position == 'rope' and self.key_dim % 2:
      raise ValueError(f'RoPE needs an even head width, got {self.key_dim}')
    if self.position == 'sinusoidal' and self.d_model % 2:
      raise ValueError(f'sinusoidal positions need an even model.d_model, got {self.d_model}')
    if self.attention == 'cudnn' and self.dtype == 'float32':
      raise ValueError("model.attention='cudnn' needs model.dtype='bfloat16': cuDNN's fused kernel has no float32")
    if not 0.0 <= self.dropout < 1.0:
      raise ValueError(f'model.dropout={self.dropout} must be in [0, 1)')

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
    if self.mlp == 'swiglu':  # Same parameter count as a 4x GELU MLP, rounded to a multiple of 64.
      return -(-8 * self.d_model // 3 // 64) * 64
    return 4 * self.d_model

  @property
  def compute_dtype(self):
    return DTYPES[self.dtype]

  def replace(self, **changes) -> 'ModelConfig':
    return dataclasses.replace(self, **changes)

  @classmethod
  def from_config(cls, model_config: Any, *, vocab_size: int, max_len: int) -> 'ModelConfig':
    """Builds from `config.model`; `vocab_size`/`max_len` fill the fields the config leaves at 0."""
    values = dict(model_config)
    if values['vocab_size'] and values['vocab_size'] < vocab_size:
      raise ValueError(f'model.vocab_size={values["vocab_size"]} is smaller than the tokenizer\'s {vocab_size}')
    values['vocab_size'] = values['vocab_size'] or vocab_size
    values['max_len'] = values['max_len'] or max_len
    unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
    if unknown:
      raise ValueError(f'unknown model config keys: {sorted(unknown)}')
    return cls(**values)


class Block(nn.Module):
  """Pre-norm Transformer block: x + Attn(Norm(x)), then x + Mlp(Norm(x))."""
  config: ModelConfig

  @nn.compact
  def __call__(self, x: Array, segment_ids: Array, positions: Array, deterministic: bool) -> Array:
    c = self.config
    h = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    h = layers.Attention(
        num_heads=c.num_heads, num_kv_heads=c.kv_heads, head_dim=c.key_dim, causal=True,
        rope_base=c.rope_base if c.position == 'rope' else None, implementation=c.attention,
        use_bias=c.use_bias, dtype=c.compute_dtype, name='attention')(h, segment_ids, positions)
    x = x + nn.Dropout(c.dropout)(h, deterministic=deterministic)
    h = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    h = layers.Mlp(c.hidden_dim, c.mlp, c.use_bias, c.compute_dtype, name='mlp')(h)
    return x + nn.Dropout(c.dropout)(h, deterministic=deterministic)


class DecoderLM(nn.Module):
  """Decoder-only Transformer LM: tokens `[B, L]` -> float32 logits `[B, L, V]`.

  `segment_ids` (0 = padding) keep attention inside each packed document; `positions` restart per document.
  Both default to a single unpadded document per row.
  """
  config: ModelConfig

  @nn.compact
  def __call__(self, tokens: Array, segment_ids: Array | None = None, positions: Array | None = None,
               *, deterministic: bool = True) -> Array:
    c = self.config
    if segment_ids is None:
      segment_ids = jnp.ones_like(tokens)
    if positions is None:
      positions = jnp.broadcast_to(jnp.arange(tokens.shape[1]), tokens.shape)
    embedding = self.param('embedding', nn.with_logical_partitioning(layers.default_kernel_init, ('vocab', 'embed')),
                           (c.vocab_size, c.d_model), jnp.float32)
    x = jnp.take(embedding, tokens, axis=0)
    if c.position == 'learned':
      table = self.param('position_embedding', nn.with_logical_partitioning(layers.default_kernel_init, (None, 'embed')),
                         (c.max_len, c.d_model), jnp.float32)
      x = x + jnp.take(table, positions, axis=0)
    elif c.position == 'sinusoidal':
      x = x + layers.sinusoidal_positions(positions, c.d_model)
    x = nn.with_logical_constraint(x, ACTIVATION_AXES)
    x = self.perturb('embedded', x)  # A zero hook: gradients w.r.t. it test causality per position.
    x = nn.Dropout(c.dropout)(x, deterministic=deterministic)
    block = Block if c.remat == 'none' else nn.remat(Block, policy=REMAT_POLICIES[c.remat], static_argnums=(4,))
    for i in range(c.num_layers):
      x = nn.with_logical_constraint(block(c, name=f'block_{i}')(x, segment_ids, positions, deterministic),
                                     ACTIVATION_AXES)
    x = layers.make_norm(c.norm, c.norm_eps, c.use_bias)(x)
    if c.tie_embeddings:
      logits = layers.matmul(x, embedding.T, c.compute_dtype)
    else:
      logits = layers.Dense(c.vocab_size, kernel_axes=('embed', 'vocab'), use_bias=False, dtype=c.compute_dtype,
                            name='unembed')(x)
    # Split by batch like the inputs: [B, L, V] is the largest activation, never to be gathered whole.
    return nn.with_logical_constraint(logits, ('batch', 'length', 'vocab'))
