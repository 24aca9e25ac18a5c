"""Parameter counts, FLOPs per token of both model families, peak FLOP/s per device, and the size ladder's table:
the one accounting behind MFU and the x-axis of every scaling plot.

Parameters, from a ModelConfig (`param_counts`) or a param tree (`count_param_tree`), which agree exactly: Kaplan
et al. 2020's N is `ParamCounts.non_embedding` (without the token and position embeddings or an untied output
projection, the vocabulary's second matrix); Chinchilla's (Hoffmann et al. 2022) is `ParamCounts.total`.

FLOPs (`flops_per_row`, `flops_per_token`) count matmuls, 2 per multiply-add, as PaLM's appendix B (MFU's model
FLOPs): each weight matrix once per token it is applied to, plus attention's QK^T and PV over the pairs of
positions each attention spans. Training is 3x the forward pass (the backward pass runs 2 dots per forward dot).
`causal_discount=True` halves causal self-attention's QK^T and PV, the pairs a causal kernel need not compute; our
attention computes and masks them (XLA's count includes them), so MFU divides the undiscounted count. Softmax,
norms, activations, the loss and the optimizer are left out: 2.5-6% more at the widths of tests/test_flops.py,
which compares the count with XLA's cost analysis of the compiled train step.
"""
from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from lm import hardware
from lm import model as model_lib

# Dense peak FLOP/s per chip by matmul input dtype (model.dtype), no sparsity, from the vendors' data sheets, whose
# NVIDIA tensor-core figures are with 2:4 sparsity: half of them here. 'float32' is what XLA runs a float32 dot as
# by default: TF32 tensor cores on NVIDIA GPUs; one bfloat16 pass on a TPU's MXU. Keys are substrings of jax's
# device_kind; the longest that matches wins ('TPU v5 lite' over 'TPU v5').
PEAK_FLOPS = {
    # NVIDIA H100 Tensor Core GPU data sheet: SXM BF16 1,979 / TF32 989 TFLOPS; PCIe 1,513 / 756; NVL 1,671 / 835.
    'H100': {'bfloat16': 989.5e12, 'float32': 494.5e12},
    'H100 PCIe': {'bfloat16': 756.5e12, 'float32': 378e12},
    'H100 NVL': {'bfloat16': 835.5e12, 'float32': 417.5e12},
    # NVIDIA H200 Tensor Core GPU data sheet: SXM the same as H100 SXM; NVL BF16 1,671 / TF32 835.
    'H200': {'bfloat16': 989.5e12, 'float32': 494.5e12},
    'H200 NVL': {'bfloat16': 835.5e12, 'float32': 417.5e12},
    # NVIDIA A100 Tensor Core GPU data sheet (SXM and PCIe): BF16 624 / TF32 312 TFLOPS.
    'A100': {'bfloat16': 312e12, 'float32': 156e12},
    # Google Cloud TPU system architecture pages, bf16 per chip: v4 275, v5e 197, v5p 459, v6e (Trillium) 918
    # TFLOPS. jax names v5e 'TPU v5 lite', v5p 'TPU v5', v6e 'TPU v6 lite'.
    'TPU v4': {'bfloat16': 275e12, 'float32': 275e12},
    'TPU v5 lite': {'bfloat16': 197e12, 'float32': 197e12},
    'TPU v5e': {'bfloat16': 197e12, 'float32': 197e12},
    'TPU v5': {'bfloat16': 459e12, 'float32': 459e12},
    'TPU v5p': {'bfloat16': 459e12, 'float32': 459e12},
    'TPU v6 lite': {'bfloat16': 918e12, 'float32': 918e12},
    'TPU v6e': {'bfloat16': 918e12, 'float32': 918e12},
}


# ----------------------------------------------------------------------------------------------------------
# Parameters.


@dataclasses.dataclass(frozen=True)
class ParamCounts:
  """Parameters by role. Kaplan's N is `non_embedding`, Chinchilla's `total`."""
  non_embedding: int  # Blocks (attention, MLP, their norms and biases), final norms, a pointer generator.
  embedding: int  # The token embedding [V, D] (also the output projection when tied).
  position: int  # Learned position tables [max_len, D], T5's relative bias tables [buckets, H]: one per stack.
  unembedding: int  # An untied output projection [D, V]; 0 when tied.

  @property
  def total(self) -> int:
    return self.non_embedding + self.embedding + self.position + self.unembedding


def _dense(config: model_lib.ModelConfig, fan_in: int, fan_out: int) -> int:
  return fan_in * fan_out + (fan_out if config.use_bias else 0)


def _norm(config: model_lib.ModelConfig) -> int:
  """A scale, and a LayerNorm's bias (RMSNorm has none)."""
  return config.d_model * (2 if config.norm == 'layernorm' and config.use_bias else 1)


def _block(config: model_lib.ModelConfig, *, cross: bool) -> int:
  c = config
  d, hk, gk = c.d_model, c.num_heads * c.key_dim, c.kv_heads * c.key_dim
  attention = _dense(c, d, hk) + 2 * _dense(c, d, gk) + _dense(c, hk, d) + _norm(c)
  gated = c.mlp in ('swiglu', 'gated_gelu')
  mlp = (2 if gated else 1) * _dense(c, d, c.hidden_dim) + _dense(c, c.hidden_dim, d) + _norm(c)
  return attention * (2 if cross else 1) + mlp


def param_counts(config: model_lib.ModelConfig) -> ParamCounts:
  """The parameters of `build_model(config)`, counted from its config."""
  c = config
  stacks = 2 if c.architecture == 'encoder_decoder' else 1
  non_embedding = c.num_layers * _block(c, cross=stacks == 2) + _norm(c)
  if stacks == 2:
    non_embedding += c.encoder_layers * _block(c, cross=False) + _norm(c)
    if c.pointer_generator:  # Key and query d x d, a gate over [x; context] that always has a bias.
      non_embedding += 2 * _dense(c, c.d_model, c.d_model) + 2 * c.d_model + 1
  position = {'learned': c.max_len * c.d_model, 'relative': c.relative_buckets * c.num_heads}.get(c.position, 0)
  return ParamCounts(non_embedding=non_embedding, embedding=c.vocab_size * c.d_model, position=stacks * position,
                     unembedding=0 if c.tie_embeddings else c.d_model * c.vocab_size)


def _role(path) -> str:
  """The ParamCounts field of the param at `path` (by the names lm/model.py gives them)."""
  names = [str(getattr(key, 'key', key)) for key in path]
  if 'unembed' in names:
    return 'unembedding'
  if names[-1] in ('position_embedding', 'rel_embedding'):
    return 'position'
  return 'embedding' if names[-1] == 'embedding' else 'non_embedding'


def count_param_tree(params: Any) -> ParamCounts:
  """ParamCounts of a param tree (arrays or shapes, boxed or not), by role."""
  counts = dict.fromkeys((field.name for field in dataclasses.fields(ParamCounts)), 0)
  for path, leaf in jax.tree_util.tree_leaves_with_path(nn.meta.unbox(params)):
    counts[_role(path)] += int(np.prod(leaf.shape))
  return ParamCounts(**counts)


def count_params(params) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def _attention_params(config: model_lib.ModelConfig) -> tuple[int, int]:
  """(query + output, key + value) kernel parameters of one attention layer."""
  d, k = config.d_model, config.key_dim
  return 2 * d * k * config.num_heads, 2 * d * k * config.kv_heads


def _mlp_params(config: model_lib.ModelConfig) -> int:
  return (3 if config.mlp in ('swiglu', 'gated_gelu') else 2) * config.d_model * config.hidden_dim


def _pointer_generator_params(config: model_lib.ModelConfig) -> tuple[int, int]:
  """(kernel params applied per input token: its key; per target token: its query and gate); 0s without one."""
  d = config.d_model
  return (d * d, d * d + 2 * d) if config.pointer_generator else (0, 0)


def matmul_params(config: model_lib.ModelConfig) -> int:
  """Parameters that take part in matmuls: every dense kernel and the output projection (tied or not).

  For an encoder-decoder: encoder blocks, decoder blocks (self- and cross-attention), the output projection and
  a pointer generator's key, query and gate.
  """
  qo, kv = _attention_params(config)
  block = qo + kv + _mlp_params(config)
  output = config.d_model * config.vocab_size
  if config.architecture == 'encoder_decoder':
    return (config.encoder_layers * block + config.num_layers * (block + qo + kv) + output
            + sum(_pointer_generator_params(config)))
  return config.num_layers * block + output


# ----------------------------------------------------------------------------------------------------------
# FLOPs.


def _forward_flops(config: model_lib.ModelConfig, target_len: int, input_len: int, causal_discount: bool) -> float:
  """Matmul FLOPs of one forward pass over a row: 2 per weight per token it is applied to, and 4 * H * K per
  attended (query, key) pair (QK^T and PV)."""
  c = config
  qo, kv = _attention_params(c)
  block = qo + kv + _mlp_params(c)
  weights = target_len * (c.num_layers * block + c.d_model * c.vocab_size)  # Decoder blocks, output projection.
  pairs = c.num_layers * target_len * target_len * (0.5 if causal_discount else 1.0)  # Causal self-attention.
  copy_pairs = 0  # A pointer generator's one head of width d_model, target over input.
  if c.architecture == 'encoder_decoder':
    # Encoder blocks per input token; cross-attention's query and output per target token, key and value per input.
    weights += input_len * c.encoder_layers * block + c.num_layers * (target_len * qo + input_len * kv)
    pairs += c.encoder_layers * input_len * input_len + c.num_layers * target_len * input_len
    per_input, per_target = _pointer_generator_params(c)
    weights += input_len * per_input + target_len * per_target
    copy_pairs = target_len * input_len if c.pointer_generator else 0
  return float(2 * weights + 4 * c.num_heads * c.key_dim * pairs + 4 * c.d_model * copy_pairs)


def flops_per_row(config: model_lib.ModelConfig, *, target_len: int, input_len: int = 0, training: bool = True,
                  causal_discount: bool = False) -> float:
  """Model FLOPs of one batch row: the training step's (3x the forward pass) or, `training=False`, the forward
  pass's (inference over the row; decoding with a KV cache attends as causally as that, so discount it).

  Decoder-only: `target_len` tokens. Encoder-decoder: each weight is applied per token of its side (encoder
  blocks and cross-attention keys/values per input token; decoder blocks, cross-attention queries/outputs and
  the output projection per target token), attention spans encoder self (input x input), decoder self (target x
  target, the causal one) and cross (target x input); a pointer generator adds its key per input token, its
  query and gate per target token, and one head of width d_model over the input.
  """
  forward = _forward_flops(config, target_len, input_len if config.architecture == 'encoder_decoder' else 0,
                           causal_discount)
  return 3 * forward if training else forward


def flops_per_token(config: model_lib.ModelConfig, seq_len: int, *, input_len: int = 0, training: bool = True,
                    causal_discount: bool = False) -> float:
  """`flops_per_row` per row position (both sides of an encoder-decoder's row, as the run's tokens/s counts).

  Decoder-only training, undiscounted, is PaLM's 6 N + 12 * layers * heads * head_dim * seq_len, N the matmul
  parameters (`matmul_params`, the output projection included).
  """
  input_len = input_len if config.architecture == 'encoder_decoder' else 0
  return flops_per_row(config, target_len=seq_len, input_len=input_len, training=training,
                       causal_discount=causal_discount) / (seq_len + input_len)


# ----------------------------------------------------------------------------------------------------------
# Peak FLOP/s.


def table_peak_flops(device_kind: str, dtype: str) -> float:
  """PEAK_FLOPS's figure for a device kind ('NVIDIA H100 80GB HBM3') and dtype; NaN for a device it lacks."""
  names = [name for name in PEAK_FLOPS if name.lower() in device_kind.lower()]
  return PEAK_FLOPS[max(names, key=len)][dtype] if names else float('nan')


def peak_flops(dtype: str) -> float:
  """Peak FLOP/s of one device: PEAK_FLOPS's for known accelerators; on CPU, lm/hardware.py's measured matmul
  rate of `dtype`."""
  device = jax.devices()[0]
  if device.platform != 'cpu':
    return table_peak_flops(device.device_kind, dtype)
  return hardware.matmul_flops()[dtype]


# ----------------------------------------------------------------------------------------------------------
# The size ladder's table (`./run.sh sizes`).


def sized_config(model_config: Any, size: str, *, vocab_size: int, max_len: int) -> model_lib.ModelConfig:
  """`model_config`'s options (a config.model or ModelConfig) at a ladder size: its shape keys the size's, whatever
  it sets; dtype 'auto' taken as bfloat16 (no probe: the counts do not depend on it)."""
  values = {field.name: getattr(model_config, field.name) for field in dataclasses.fields(model_lib.ModelConfig)}
  values.update({key: 0 for key in model_lib.Size._fields}, size=size, vocab_size=vocab_size, max_len=max_len)
  if values['dtype'] == 'auto':
    values['dtype'] = 'bfloat16'
  return model_lib.ModelConfig(**values)


def _short(x: float, billion: str = 'G') -> str:
  """3 significant digits and a suffix: 98.3k, 10.6M, 1.01G (params: `billion='B'`)."""
  for suffix, scale in (('T', 1e12), (billion, 1e9), ('M', 1e6), ('k', 1e3)):
    if x >= scale:
      return f'{x / scale:.3g}{suffix}'
  return f'{x:.3g}'


_COLUMNS = (('size', 5), ('layers', 6), ('d_model', 7), ('heads', 5), ('head', 4), ('d_ff', 6), ('non-emb', 8),
            ('total', 8), ('train FLOPs/token', 18), ('causal', 7), ('inference (causal)', 19))


def _size_row(config: model_lib.ModelConfig, lengths: tuple[int, int]) -> tuple:
  counts = param_counts(config)
  per_token = functools.partial(flops_per_token, config, lengths[0], input_len=lengths[1])
  return (config.size, config.num_layers, config.d_model, config.num_heads, config.key_dim, config.hidden_dim,
          _short(counts.non_embedding, 'B'), _short(counts.total, 'B'), _short(per_token()),
          _short(per_token(causal_discount=True)), _short(per_token(training=False, causal_discount=True)))


def size_table(model_config: Any, *, vocab_size: int, target_len: int, input_len: int = 0) -> str:
  """Every ladder size under `model_config`'s other options: shape, parameters (Kaplan's non-embedding N,
  Chinchilla's total) and FLOPs per token at these row lengths, for training (undiscounted: MFU's; causally
  discounted) and for inference (the forward pass, discounted)."""
  m = model_config
  lengths = (target_len, input_len if m.architecture == 'encoder_decoder' else 0)
  rows = f'input {input_len} + target {target_len} tokens a row' if lengths[1] else f'context {target_len}'
  lines = [f'{m.architecture}, mlp {m.mlp}, {"tied" if m.tie_embeddings else "untied"} output, {m.position} '
           f'positions; vocab {vocab_size:,}, {rows}', ' '.join(f'{name:>{width}}' for name, width in _COLUMNS)]
  for size in model_lib.SIZES:
    row = _size_row(sized_config(m, size, vocab_size=vocab_size, max_len=max(lengths)), lengths)
    lines.append(' '.join(f'{value:>{width}}' for value, (_, width) in zip(row, _COLUMNS)))
  return '\n'.join(lines)
