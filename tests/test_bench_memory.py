"""bench/memory.py's per-device byte accounting against the real shardings (fast: eval_shape only)."""
import importlib.util
import os

import flax.linen as nn
import jax
import pytest

from lm import flops as flops_lib

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
  from lm import parallel
  return parallel.make_mesh(shape, jax.devices()[:shape[0] * shape[1] * shape[2]])


def test_replicated_state_is_params_and_two_adam_moments(tiny):
  model, boxed = tiny
  n = flops_lib.count_params(nn.meta.unbox(boxed.params))
  single = memory.state_bytes_per_device(boxed, _mesh((1, 1, 1)))
  assert single['params'] == 4 * n
  assert 2 * 4 * n <= single['opt_state'] <= 2 * 4 * n + 64  # mu, nu, plus scalar counts.
  assert memory.state_bytes_per_device(boxed, _mesh((8, 1, 1))) == single  # Data parallel replicates.


def test_fsdp_shards_every_embed_axis(tiny):
  model, boxed = tiny
  single = memory.state_bytes_per_device(boxed, _mesh((1, 1, 1)))
  fsdp = memory.state_bytes_per_device(boxed, _mesh((1, 8, 1)))
  # Every kernel and the embedding carry 'embed'; only the small biases/norm vectors without it stay whole.
  assert single['params'] / 8 <= fsdp['params'] < single['params'] / 4


def test_remat_lowers_the_activation_estimate(tiny):  # Deep enough that one recomputed layer is small.
  model, _ = tiny
  acts = {r: memory.activation_bytes(model.config.replace(remat=r, num_layers=12), 8, 32, r)['total'] for r in memory.REMATS}
  assert acts['full'] < acts['save_matmuls'] < acts['none']
