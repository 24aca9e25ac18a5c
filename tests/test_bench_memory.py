"""bench/memory.py's per-device byte accounting against the real shardings (fast: eval_shape only)."""
import importlib.util
import os

import flax.linen as nn
import jax
import pytest

from lm import flops as flops_lib
from lm import parallel

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench', 'memory.py')
spec = importlib.util.spec_from_file_location('bench_memory', _PATH)
memory = importlib.util.module_from_spec(spec)
spec.loader.exec_module(memory)


@pytest.fixture(scope='module')
def tiny():
  config = memory.make_config(2, 64, 4, 128, 32)
  model, tx = memory.model_and_tx(config)
  return model, memory.boxed_state_shape(model, tx, 32)


def _mesh(shape):
  return parallel.make_mesh(shape, jax.devices()[:shape[0] * shape[1] * shape[2]])


def test_replicated_state_is_params_and_two_adam_moments(tiny):
  model, boxed = tiny
  n = flops_lib.count_params(nn.meta.unbox(boxed.params))
  single = memory.state_bytes_per_device(boxed, _mesh((1, 1, 1)))
  assert single['params'] == 4 * n
  assert 2 * 4 * n <= single['opt_state'] <= 2 * 4 * n + 64  # mu, nu, plus scalar counts.
  assert memory.state_bytes_per_device(boxed, _mesh((8, 1, 1))) == single  # Data parallel replicates.


# Bytes per device of each float32 param of the tiny model (2 layers, d_model 64, MLP 256, vocab 128, 32 positions)
# on a (1, 8, 1) mesh: shape x 4 bytes / the 8 fsdp shards of its 'embed' axis; with no 'embed' axis, whole.
_BLOCK_BYTES_FSDP8 = {
    'LayerNorm_0/bias': 64 * 4, 'LayerNorm_0/scale': 64 * 4,  # No 'embed' axis: replicated.
    'LayerNorm_1/bias': 64 * 4, 'LayerNorm_1/scale': 64 * 4,
    'attention/query/kernel': 64 * 64 * 4 // 8, 'attention/query/bias': 64 * 4,  # ('heads',): whole on fsdp.
    'attention/key/kernel': 64 * 64 * 4 // 8, 'attention/key/bias': 64 * 4,
    'attention/value/kernel': 64 * 64 * 4 // 8, 'attention/value/bias': 64 * 4,
    'attention/out/kernel': 64 * 64 * 4 // 8, 'attention/out/bias': 64 * 4 // 8,  # Output bias: ('embed',).
    'mlp/wi/kernel': 64 * 256 * 4 // 8, 'mlp/wi/bias': 256 * 4,  # ('mlp',): whole on fsdp.
    'mlp/wo/kernel': 256 * 64 * 4 // 8, 'mlp/wo/bias': 64 * 4 // 8,
}
_PARAM_BYTES_FSDP8 = {
    'embedding': 128 * 64 * 4 // 8, 'position_embedding': 32 * 64 * 4 // 8,
    'LayerNorm_0/bias': 64 * 4, 'LayerNorm_0/scale': 64 * 4,  # The final norm.
    **{f'block_{i}/{name}': n for i in range(2) for name, n in _BLOCK_BYTES_FSDP8.items()},
}


def test_fsdp_shards_every_embed_axis(tiny):
  model, boxed = tiny
  assert model.config.hidden_dim == 256 and model.config.max_len == 32  # The sizes the table is written for.
  mesh = _mesh((1, 8, 1))
  shardings = jax.tree.leaves(parallel.shardings_from_logical(boxed.params, mesh),
                              is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
  per_leaf = {jax.tree_util.keystr(path, simple=True, separator='/'): memory.shard_bytes(x.shape, x.dtype, s)
              for (path, x), s in zip(jax.tree_util.tree_leaves_with_path(nn.meta.unbox(boxed.params)), shardings)}
  assert per_leaf == _PARAM_BYTES_FSDP8  # Names the leaf that is laid out otherwise.
  fsdp = memory.state_bytes_per_device(boxed, mesh)
  assert fsdp['params'] == sum(_PARAM_BYTES_FSDP8.values()) == 60_544  # 2 x 27,456 per block + 512 + 5,120.
  # Adam's mu and nu are laid out like the params; its count and the schedule's are int32 scalars.
  assert fsdp['opt_state'] == 2 * 60_544 + 2 * 4


def test_remat_lowers_the_activation_estimate(tiny):  # Deep enough that one recomputed layer is small.
  model, _ = tiny
  acts = {r: memory.activation_bytes(model.config.replace(remat=r, num_layers=12), 8, 32, r)['total']
          for r in memory.REMATS}
  assert acts['full'] < acts['save_matmuls'] < acts['none']
