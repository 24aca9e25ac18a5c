"""Per-device training memory: params, optimizer state, activations; analytic and as XLA compiles the step.

Run: ./run.sh bench memory [--sizes=tiny,25m,125m,350m,1.3b] [--strategies=single,dp,fsdp,fsdp_tp]
                           [--batch_per_device=8] [--remat=none,full,save_matmuls] [--dtype=bfloat16]
                           [--measure_max_params=30e6] [--device_memory_gb=80]

Nothing full-size is ever allocated: shapes come from `jax.eval_shape` of the boxed `step.init_state`, the
per-device layout from `parallel.shardings_from_logical` on a mesh of 8 fake CPU devices, and the measured
figures from `jax.jit(train_step).lower(abstract args).compile().memory_analysis()`.

Strategies (N = --num_devices, mesh axes (data, fsdp, tensor)):
  single   one device, mesh (1, 1, 1);
  dp       data parallel, mesh (N, 1, 1): params and optimizer state replicated;
  fsdp     mesh (1, N, 1): params and optimizer state sharded on the 'embed' axis;
  fsdp_tp  mesh (1, N/T, T), T = --tensor: 'embed' over fsdp, 'heads'/'mlp' over tensor.
The batch per device is --batch_per_device rows of seq_len tokens per data x fsdp shard (tensor-parallel
devices of one group share their rows).

Per-device bytes of each state leaf = its bytes / the number of shards of its NamedSharding (ceil per dim).
Gradients are float32 with the params' layout, so they count as one more params-sized buffer.

Activations (bytes saved for the backward pass, analytic), per layer, with T tokens per device (B * L),
D the width, F the MLP width (4D), H heads, c the bytes of the compute dtype (4 float32, 2 bfloat16),
t the tensor-parallel degree. The residual stream, norms and matmul outputs are float32; matmuls save their
inputs cast to the compute dtype (lm/kernels.py `matmul`); 'fused' attention saves q, k, v, out and the
float32 probabilities:
  none          T * [(8D + 2cD) + (16D + cD + 4F + cF) / t] + 4 * B * (H/t) * L * L
                (~ T * D * (40 + 7c) + 4 B H L^2 for F = 4D, t = 1; 68 TD in float32, 54 TD in bfloat16)
  save_matmuls  T * [12D + (12D + 4F) / t] kept per layer (block input and every dense output)
                + one layer of 'none' while the backward pass recomputes it
  full          T * 4D kept per layer (the block input) + one layer of 'none' during recompute
plus, outside the blocks: logits and their gradient, 2 * T * V * 4 (the vocabulary is not sharded), and
~12 T D for the embedding sum and final norm; in bfloat16 each matmul also keeps its cast kernel (2 bytes per
param shard). 'cudnn' (flash attention on GPU) has no L^2 term; this estimate keeps it.

"Largest model that fits": for each strategy and remat, the widest member of a family (--fit_layers layers,
head width 128, vocab 50304, seq 1024, --batch_per_device rows) whose analytic total (params + grads +
optimizer state + activations) stays under --device_memory_gb; param bytes come from the real shardings.
"""
import os

# 8 fake CPU devices, before jax is imported, so meshes of up to 8 devices exist on any machine.
os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()
os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import functools  # noqa: E402
import math  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

from absl import app  # noqa: E402
from absl import flags  # noqa: E402
import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

# `.venv/bin/python bench/memory.py` works as `./run.sh bench memory` does: the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base  # noqa: E402
from lm import flops as flops_lib  # noqa: E402
from lm import optim  # noqa: E402
from lm import parallel  # noqa: E402
from lm import rundir  # noqa: E402
from lm import step as step_lib  # noqa: E402

SIZES = {  # name: (num_layers, d_model, num_heads, vocab_size, seq_len)
    'tiny': (4, 128, 4, 256, 256),  # ~0.8M
    '25m': (8, 384, 6, 32768, 512),  # ~27M
    '125m': (12, 768, 12, 50304, 1024),  # GPT-2 small
    '350m': (24, 1024, 16, 50304, 1024),  # GPT-2 medium
    '1.3b': (24, 2048, 16, 50304, 1024),  # GPT-3 XL
}
STRATEGIES = ('single', 'dp', 'fsdp', 'fsdp_tp')
REMATS = ('none', 'full', 'save_matmuls')
GB = 1e9

_SIZES = flags.DEFINE_list('sizes', list(SIZES), f'Model sizes, of {list(SIZES)}.')
_STRATEGIES = flags.DEFINE_list('strategies', list(STRATEGIES), f'Layouts, of {list(STRATEGIES)}.')
_REMAT = flags.DEFINE_list('remat', list(REMATS), 'Remat policies for the activation estimates.')
_BATCH = flags.DEFINE_integer('batch_per_device', 8, 'Rows per data-parallel shard.')
_DTYPE = flags.DEFINE_enum('dtype', 'bfloat16', ['float32', 'bfloat16'], 'Compute dtype (params stay float32).')
_NUM_DEVICES = flags.DEFINE_integer('num_devices', 8, 'Devices of the dp / fsdp / fsdp_tp meshes (<= 8).')
_TENSOR = flags.DEFINE_integer('tensor', 2, 'Tensor-parallel degree of fsdp_tp.')
_MEASURE_MAX = flags.DEFINE_float('measure_max_params', 30e6,
                                  'Compile the step and read its memory analysis only up to this many params '
                                  '(CPU compile time grows with depth; 125m takes ~1 min per strategy).')
_MEASURE_REMAT = flags.DEFINE_string('measure_remat', 'none', 'Remat policy of the compiled (measured) step.')
_DEVICE_GB = flags.DEFINE_float('device_memory_gb', 80.0, 'Per-device memory for the largest-model search.')
_FIT_LAYERS = flags.DEFINE_integer('fit_layers', 24, 'Depth of the shape family of the largest-model search.')
_FIT_SEQ = flags.DEFINE_integer('fit_seq_len', 1024, 'Sequence length of the largest-model search.')


def mesh_shape(strategy: str) -> tuple[int, int, int]:
  n, t = _NUM_DEVICES.value, _TENSOR.value
  if strategy == 'single':
    return (1, 1, 1)
  if strategy == 'dp':
    return (n, 1, 1)
  if strategy == 'fsdp':
    return (1, n, 1)
  if strategy == 'fsdp_tp':
    if n % t:
      raise ValueError(f'--tensor={t} does not divide --num_devices={n}')
    return (1, n // t, t)
  raise ValueError(f'unknown strategy {strategy!r}: expected one of {STRATEGIES}')


@functools.lru_cache(maxsize=None)
def get_mesh(strategy: str):
  shape = mesh_shape(strategy)
  return parallel.make_mesh(shape, jax.devices()[:int(np.prod(shape))])


def make_config(num_layers, d_model, num_heads, vocab_size, seq_len, dtype='bfloat16', remat='none',
                attention='fused'):
  config = base.get_config()
  config.model.update(num_layers=num_layers, d_model=d_model, num_heads=num_heads, vocab_size=vocab_size,
                      dtype=dtype, remat=remat, attention=attention, dropout=0.0)
  config.data.seq_len = seq_len
  return config


def model_and_tx(config):
  return rundir.build_model(config, config.model.vocab_size), optim.make_optimizer(config.train)


def boxed_state_shape(model, tx, seq_len):
  return jax.eval_shape(functools.partial(step_lib.init_state, model, tx, seq_len=seq_len, boxed=True),
                        jax.random.PRNGKey(0))


def shard_bytes(shape, dtype, sharding) -> int:
  """Bytes one device holds of an array of `shape` laid out by a NamedSharding (ceil per sharded dim)."""
  spec = tuple(sharding.spec) + (None,) * (len(shape) - len(sharding.spec))
  n = 1
  for dim, axes in zip(shape, spec):
    ways = 1
    for axis in (axes if isinstance(axes, tuple) else (axes,)):
      if axis is not None:
        ways *= sharding.mesh.shape[axis]
    n *= math.ceil(dim / ways)
  return n * np.dtype(dtype).itemsize


def state_bytes_per_device(boxed_state, mesh) -> dict[str, int]:
  """{'params', 'opt_state', 'total'}: bytes per device of the train state under `mesh`'s rules."""
  shardings = parallel.shardings_from_logical(boxed_state, mesh)
  state = nn.meta.unbox(boxed_state)

  def tree_bytes(tree, tree_shardings):
    leaves = jax.tree.leaves(tree)
    sh = jax.tree.leaves(tree_shardings, is_leaf=lambda x: isinstance(x, jax.sharding.Sharding))
    assert len(leaves) == len(sh), (len(leaves), len(sh))
    return sum(shard_bytes(x.shape, x.dtype, s) for x, s in zip(leaves, sh))

  out = {'params': tree_bytes(state.params, shardings.params),
         'opt_state': tree_bytes(state.opt_state, shardings.opt_state)}
  out['total'] = tree_bytes(state, shardings)
  return out


def activation_bytes(c, batch, seq_len, remat, tensor=1) -> dict[str, float]:
  """Analytic activation bytes per device (see the module docstring): {'blocks', 'outside', 'total'}."""
  mc = c  # A ModelConfig.
  d, f, h, v = mc.d_model, mc.hidden_dim, mc.num_heads, mc.vocab_size
  cb = 4 if mc.dtype == 'float32' else 2
  tokens = batch * seq_len
  scores = 4 * batch * (h / tensor) * seq_len * seq_len  # float32 attention probabilities.
  full_layer = tokens * ((8 * d + 2 * cb * d) + (16 * d + cb * d + 4 * f + cb * f) / tensor) + scores
  if remat == 'none':
    blocks = mc.num_layers * full_layer
  elif remat == 'save_matmuls':
    blocks = mc.num_layers * tokens * (12 * d + (12 * d + 4 * f) / tensor) + full_layer
  elif remat == 'full':
    blocks = mc.num_layers * tokens * 4 * d + full_layer
  else:
    raise ValueError(remat)
  outside = 2 * tokens * v * 4 + 12 * tokens * d
  return {'blocks': blocks, 'outside': outside, 'total': blocks + outside}


def analytic_total(state_bytes, act, dtype) -> float:
  """params + grads (params-sized) + optimizer state + activations (+ cast kernels in bfloat16)."""
  casts = state_bytes['params'] / 2 if dtype == 'bfloat16' else 0
  return state_bytes['params'] * 2 + state_bytes['opt_state'] + act['total'] + casts


def measure(config, strategy) -> tuple[dict[str, int], float]:
  """The compiled step's memory analysis on the fake-device mesh, and the compile seconds."""
  model, tx = model_and_tx(config)
  seq_len = config.data.seq_len
  mesh = get_mesh(strategy)
  boxed = boxed_state_shape(model, tx, seq_len)
  shardings = parallel.shardings_from_logical(boxed, mesh)
  state = jax.tree.map(lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s),
                       nn.meta.unbox(boxed), shardings)
  batch_sharding = parallel.batch_sharding(mesh)
  rows = _BATCH.value * mesh.shape['data'] * mesh.shape['fsdp']
  batch = {k: jax.ShapeDtypeStruct((rows, seq_len), dt, sharding=batch_sharding) for k, dt in (
      ('decoder_input_tokens', jnp.int32), ('decoder_target_tokens', jnp.int32),
      ('decoder_loss_weights', jnp.float32), ('decoder_segment_ids', jnp.int32),
      ('decoder_positions', jnp.int32))}
  step = functools.partial(step_lib.train_step, model=model, tx=tx,
                           token_bytes=jnp.ones((model.config.vocab_size,), jnp.float32))
  start = time.perf_counter()
  with parallel.activation_sharding(mesh):  # As the Launcher traces the step.
    lowered = jax.jit(step, in_shardings=(shardings, batch_sharding), out_shardings=(shardings, None),
                      donate_argnums=0).lower(state, batch)
  compiled = lowered.compile()
  seconds = time.perf_counter() - start
  m = compiled.memory_analysis()
  out = {k: int(getattr(m, f'{k}_size_in_bytes', 0) or 0) for k in ('argument', 'output', 'alias', 'temp')}
  out['peak'] = out['argument'] + out['output'] - out['alias'] + out['temp']
  return out, seconds


def largest_that_fits(strategy, remat, budget_bytes, cache) -> tuple[int, int, float]:
  """(width, params, analytic GB) of the widest family member under budget; width 0 if none fits."""
  layers, seq, vocab = _FIT_LAYERS.value, _FIT_SEQ.value, 50304
  mesh = get_mesh(strategy)
  tensor = mesh.shape['tensor']

  def total(k):  # Width 128 k, k heads of 128.
    key = k
    if key not in cache:
      config = make_config(layers, 128 * k, k, vocab, seq, _DTYPE.value, remat)
      model, tx = model_and_tx(config)
      cache[key] = (model.config, boxed_state_shape(model, tx, seq))
    mc, boxed = cache[key]
    mc = mc.replace(remat=remat)
    sb = state_bytes_per_device(boxed, mesh)
    act = activation_bytes(mc, _BATCH.value, seq, remat, tensor)
    params = flops_lib.count_params(nn.meta.unbox(boxed.params))
    return analytic_total(sb, act, mc.dtype), params

  lo, hi = 0, 1
  while total(hi)[0] <= budget_bytes and hi < 1024:
    lo, hi = hi, hi * 2
  while hi - lo > 1:
    mid = (lo + hi) // 2
    if total(mid)[0] <= budget_bytes:
      lo = mid
    else:
      hi = mid
  if lo == 0:
    return 0, 0, total(1)[0] / GB
  t, params = total(lo)
  return 128 * lo, params, t / GB


def main(argv):
  del argv
  for s in _SIZES.value:
    if s not in SIZES:
      raise app.UsageError(f'--sizes: unknown size {s!r}; have {list(SIZES)}')
  for s in _STRATEGIES.value:
    mesh_shape(s)
  for r in _REMAT.value + [_MEASURE_REMAT.value]:
    if r not in REMATS:
      raise app.UsageError(f'--remat: unknown policy {r!r}; have {list(REMATS)}')
  if not 1 <= _NUM_DEVICES.value <= jax.device_count():
    raise app.UsageError(f'--num_devices={_NUM_DEVICES.value}: have {jax.device_count()} devices')
  b, dtype = _BATCH.value, _DTYPE.value
  print(f'jax {jax.__version__}, {jax.device_count()} fake {jax.devices()[0].platform} devices; '
        f'batch {b} rows/device, compute dtype {dtype} (params, grads, Adam moments float32); '
        f'N={_NUM_DEVICES.value}, tensor={_TENSOR.value}; GB = 1e9 bytes, per device')
  print('act[remat] = analytic activations; total[remat] = params + grads + opt + act (+ bf16 kernel casts); '
        'measured = compiled step (remat ' + _MEASURE_REMAT.value + '): argument + output - alias + temp')
  remats = _REMAT.value
  header = (f'{"size":6} {"params":>8} {"strategy":8} {"mesh":9} {"params":>7} {"opt":>7} '
            + ' '.join(f'{"act[" + r[:4] + "]":>10}' for r in remats) + ' '
            + ' '.join(f'{"total[" + r[:4] + "]":>11}' for r in remats)
            + f' {"meas.arg":>8} {"temp":>7} {"peak":>7} {"compile":>7}')
  print(header)
  for name in _SIZES.value:
    layers, width, heads, vocab, seq = SIZES[name]
    config = make_config(layers, width, heads, vocab, seq, dtype)
    model, tx = model_and_tx(config)
    boxed = boxed_state_shape(model, tx, seq)
    n_params = flops_lib.count_params(nn.meta.unbox(boxed.params))
    for strategy in _STRATEGIES.value:
      mesh = get_mesh(strategy)
      sb = state_bytes_per_device(boxed, mesh)
      acts = {r: activation_bytes(model.config.replace(remat=r), b, seq, r, mesh.shape['tensor']) for r in remats}
      totals = {r: analytic_total(sb, acts[r], dtype) for r in remats}
      line = (f'{name:6} {n_params / 1e6:7.1f}M {strategy:8} {"x".join(map(str, mesh_shape(strategy))):9} '
              f'{sb["params"] / GB:7.3f} {sb["opt_state"] / GB:7.3f} '
              + ' '.join(f'{acts[r]["total"] / GB:10.3f}' for r in remats) + ' '
              + ' '.join(f'{totals[r] / GB:11.3f}' for r in remats))
      if n_params <= _MEASURE_MAX.value:
        m, secs = measure(make_config(layers, width, heads, vocab, seq, dtype, _MEASURE_REMAT.value), strategy)
        line += f' {m["argument"] / GB:8.3f} {m["temp"] / GB:7.3f} {m["peak"] / GB:7.3f} {secs:6.1f}s'
      else:
        line += f' {"-":>8} {"-":>7} {"-":>7} {"-":>7}'
      print(line, flush=True)

  budget = _DEVICE_GB.value * GB
  print(f'\nlargest model that fits {_DEVICE_GB.value:g} GB per device (analytic; family: {_FIT_LAYERS.value} '
        f'layers, head width 128, vocab 50304, seq {_FIT_SEQ.value}, batch {b} rows/device, {dtype}):')
  print(f'{"strategy":8} {"remat":13} {"width":>6} {"params":>9} {"GB":>7}')
  cache = {}
  for strategy in _STRATEGIES.value:
    for remat in remats:
      width, params, total = largest_that_fits(strategy, remat, budget, cache)
      shown = f'{params / 1e9:8.2f}B' if width else f'{"none":>9}'
      print(f'{strategy:8} {remat:13} {width:6} {shown} {total:7.1f}', flush=True)


if __name__ == '__main__':
  app.run(main)
