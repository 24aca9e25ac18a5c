"""Parameter counts, model FLOPs per token (PaLM's accounting) and MFU."""
import jax
import numpy as np

from lm import hardware
from lm import model as model_lib

# Dense bf16 peak FLOP/s per chip, from the vendors' data sheets (no sparsity).
PEAK_BF16_FLOPS = {
    'H100': 989e12,
    'H200': 989e12,
    'A100': 312e12,
    'TPU v4': 275e12,
    'TPU v5 lite': 197e12,
    'TPU v5p': 459e12,
    'TPU v6 lite': 918e12,
}


def _attention_params(config: model_lib.ModelConfig) -> tuple[int, int]:
  """(query + output, key + value) kernel parameters of one attention layer."""
  d, k = config.d_model, config.key_dim
  return 2 * d * k * config.num_heads, 2 * d * k * config.kv_heads


def _mlp_params(config: model_lib.ModelConfig) -> int:
  return (3 if config.mlp in ('swiglu', 'gated_gelu') else 2) * config.d_model * config.hidden_dim


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


def _pointer_generator_params(config: model_lib.ModelConfig) -> tuple[int, int]:
  """(kernel params applied per input token: its key; per target token: its query and gate); 0s without one."""
  d = config.d_model
  return (d * d, d * d + 2 * d) if config.pointer_generator else (0, 0)


def count_params(params) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def flops_per_token(config: model_lib.ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token of a decoder-only model, PaLM appendix B: 6 N + 12 layers * heads * head_dim * seq_len.

  N counts matmul parameters; the second term is attention's QK^T and AV (no discount for the causal mask).
  """
  attention = 12 * config.num_layers * config.num_heads * config.key_dim * seq_len
  return 6 * matmul_params(config) + attention


def flops_per_row(config: model_lib.ModelConfig, *, target_len: int, input_len: int = 0) -> float:
  """Training FLOPs of one batch row, by the same accounting as `flops_per_token`.

  Decoder-only: `target_len` tokens. Encoder-decoder: each matmul weight counts 6 FLOPs per token it is
  applied to (encoder blocks and the cross-attention keys/values per input token; decoder blocks, cross-
  attention queries/outputs and the output projection per target token), plus QK^T and AV over the lengths
  each attention spans: encoder self (input x input), decoder self (target x target), cross (target x input).
  A pointer generator adds its key per input token, its query and gate per target token, and one head of
  width d_model over the input.
  """
  if config.architecture != 'encoder_decoder':
    return flops_per_token(config, target_len) * target_len
  qo, kv = _attention_params(config)
  block = qo + kv + _mlp_params(config)
  hk = config.num_heads * config.key_dim
  encoder = input_len * (6 * config.encoder_layers * block + 12 * config.encoder_layers * hk * input_len)
  cross_kv = input_len * 6 * config.num_layers * kv
  decoder = target_len * (6 * (config.num_layers * (block + qo) + config.d_model * config.vocab_size)
                          + 12 * config.num_layers * hk * (target_len + input_len))
  if config.pointer_generator:
    per_input, per_target = _pointer_generator_params(config)
    cross_kv += input_len * 6 * per_input
    decoder += target_len * (6 * per_target + 12 * config.d_model * input_len)
  return float(encoder + cross_kv + decoder)


def peak_flops(dtype: str) -> float:
  """Peak FLOP/s of one device: the data-sheet bf16 figure for known accelerators; on CPU, lm/hardware.py's
  measured matmul rate of `dtype`."""
  device = jax.devices()[0]
  if device.platform != 'cpu':
    for name, flops in PEAK_BF16_FLOPS.items():
      if name.lower() in device.device_kind.lower():
        return flops if dtype == 'bfloat16' else flops / 2  # TF32-class float32 rate.
    return float('nan')
  return hardware.matmul_flops()[dtype]
