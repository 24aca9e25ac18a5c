"""Parameter counts, model FLOPs per token (PaLM's accounting) and MFU."""
import functools
import time

import jax
import jax.numpy as jnp
import numpy as np

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


def matmul_params(config: model_lib.ModelConfig) -> int:
  """Parameters that take part in matmuls: every dense kernel and the output projection (tied or not)."""
  d, k = config.d_model, config.key_dim
  attention = d * k * (config.num_heads + 2 * config.kv_heads) + config.num_heads * k * d
  mlp = (3 if config.mlp == 'swiglu' else 2) * d * config.hidden_dim
  return config.num_layers * (attention + mlp) + d * config.vocab_size


def count_params(params) -> int:
  return sum(int(np.prod(p.shape)) for p in jax.tree.leaves(params))


def flops_per_token(config: model_lib.ModelConfig, seq_len: int) -> float:
  """Training FLOPs per token, PaLM appendix B: 6 N + 12 layers * heads * head_dim * seq_len.

  N counts matmul parameters; the second term is attention's QK^T and AV (no discount for the causal mask).
  """
  attention = 12 * config.num_layers * config.num_heads * config.key_dim * seq_len
  return 6 * matmul_params(config) + attention


@functools.lru_cache(maxsize=None)
def measured_matmul_flops(dtype: str, n: int = 4096, repeats: int = 3) -> float:
  """FLOP/s of an n^3 matmul on the default device: float32, or bf16 inputs accumulating in float32."""
  in_dtype = {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[dtype]
  a = jnp.ones((n, n), in_dtype)
  f = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
  f(a, a).block_until_ready()
  best = float('inf')
  for _ in range(repeats):
    start = time.perf_counter()
    f(a, a).block_until_ready()
    best = min(best, time.perf_counter() - start)
  return 2 * n**3 / best


def peak_flops(dtype: str) -> float:
  """Peak FLOP/s of one device: the data-sheet bf16 figure for known accelerators; on CPU, measured."""
  device = jax.devices()[0]
  if device.platform != 'cpu':
    for name, flops in PEAK_BF16_FLOPS.items():
      if name.lower() in device.device_kind.lower():
        return flops if dtype == 'bfloat16' else flops / 2  # TF32-class float32 rate.
    return float('nan')
  return measured_matmul_flops(dtype)
