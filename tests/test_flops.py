import flax.linen as nn
import jax
import numpy as np
import pytest

from lm import flops
from lm import model as model_lib


@pytest.mark.parametrize('options', [dict(), dict(mlp='swiglu', num_kv_heads=2), dict(head_dim=8),
                                     dict(architecture='encoder_decoder', num_encoder_layers=3),
                                     dict(architecture='encoder_decoder', mlp='gated_gelu', num_kv_heads=2,
                                          position='relative', use_bias=False),
                                     dict(architecture='encoder_decoder', pointer_generator=True)])
def test_matmul_params_are_the_model_kernels(options):
  config = model_lib.ModelConfig(vocab_size=37, max_len=16, num_layers=2, d_model=32, num_heads=4,
                                 tie_embeddings=False, **options)
  model = model_lib.build_model(config)
  params = jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), target_len=16, input_len=16))
  kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(nn.meta.unbox(params['params']))
             if path[-1].key == 'kernel']
  assert flops.matmul_params(config) == sum(int(np.prod(k.shape)) for k in kernels)


def test_flops_per_token_is_palm_formula():
  config = model_lib.ModelConfig(vocab_size=65, max_len=64, num_layers=4, d_model=128, num_heads=4)
  n = 4 * (4 * 128 * 128 + 2 * 128 * 512) + 128 * 65
  assert flops.flops_per_token(config, 64) == 6 * n + 12 * 4 * 4 * 32 * 64


def test_encoder_decoder_flops_count_each_weight_per_token_it_touches():
  """Hand count for a 1+1-layer encoder-decoder, input 10, target 4 tokens."""
  config = model_lib.ModelConfig(vocab_size=50, max_len=16, architecture='encoder_decoder', num_layers=1,
                                 num_encoder_layers=1, d_model=8, num_heads=2, d_ff=16)
  attn, mlp = 4 * 8 * 8, 2 * 8 * 16  # q, k, v, o kernels; wi, wo.
  encoder = 10 * (6 * (attn + mlp) + 12 * 8 * 10)  # Weights per input token, QK^T/AV over 10 keys.
  decoder = 4 * (6 * (attn + attn // 2 + mlp + 8 * 50) + 12 * 8 * (4 + 10))  # Self, cross q/o, MLP, output.
  cross_kv = 10 * 6 * (attn // 2)  # Cross-attention keys/values of each input token.
  assert flops.flops_per_row(config, target_len=4, input_len=10) == encoder + decoder + cross_kv
  # A pointer generator: its key per input token; query, gate and one width-8 head over 10 inputs per target.
  copying = config.replace(pointer_generator=True)
  assert flops.flops_per_row(copying, target_len=4, input_len=10) == (
      encoder + decoder + cross_kv + 10 * 6 * 8 * 8 + 4 * (6 * (8 * 8 + 2 * 8) + 12 * 8 * 10))
  decoder_only = config.replace(architecture='decoder_only')
  assert flops.flops_per_row(decoder_only, target_len=4) == 4 * flops.flops_per_token(decoder_only, 4)
