import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import flops
from lm import model as model_lib


@pytest.mark.parametrize('options', [dict(), dict(mlp='swiglu', num_kv_heads=2), dict(head_dim=8)])
def test_matmul_params_are_the_model_kernels(options):
  config = model_lib.ModelConfig(vocab_size=37, max_len=16, num_layers=2, d_model=32, num_heads=4,
                                 tie_embeddings=False, **options)
  params = jax.eval_shape(model_lib.DecoderLM(config).init, jax.random.PRNGKey(0), jnp.zeros((1, 16), jnp.int32))
  kernels = [leaf for path, leaf in jax.tree_util.tree_leaves_with_path(nn.meta.unbox(params['params']))
             if path[-1].key == 'kernel']
  assert flops.matmul_params(config) == sum(int(np.prod(k.shape)) for k in kernels)


def test_flops_per_token_is_palm_formula():
  config = model_lib.ModelConfig(vocab_size=65, max_len=64, num_layers=4, d_model=128, num_heads=4)
  n = 4 * (4 * 128 * 128 + 2 * 128 * 512) + 128 * 65
  assert flops.flops_per_token(config, 64) == 6 * n + 12 * 4 * 4 * 32 * 64
