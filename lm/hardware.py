"""What this machine's matmuls do: one short probe of float32 and bfloat16-input matmul rates, and the dtype that
`model.dtype='auto'` resolves to.

bfloat16 inputs with float32 accumulation run 2-5x faster than float32 on CPUs with bf16 matrix instructions
(Sapphire Rapids' AMX) and on every GPU and TPU, but slower where the CPU has none (AVX2-only Zen 1: 47 against
67 GFLOP/s), because XLA converts them. So on CPU 'auto' means bfloat16 only where the probe measures it faster.
The probe takes under a second and is cached per device, core count and jaxlib version in
$LM_CACHE_DIR (default $XDG_CACHE_HOME/lm or ~/.cache/lm), outside the repository; lm/flops.py divides MFU by
the same rates.
"""
from __future__ import annotations

import functools
import json
import os
import platform
import time
from typing import Callable

import jax
import jax.numpy as jnp
import jaxlib

DTYPES = ('float32', 'bfloat16')
PROBE_SIZE = 1024  # n of the n^3 matmul: at 1024 XLA:CPU is at its 4096^3 rate (Sapphire Rapids: 365 vs 330 f32).
PROBE_SECONDS = 0.25  # Timed per dtype, in turns; the best call counts.
BF16_MARGIN = 1.1  # 'auto' picks bfloat16 on CPU only if it is this much faster: ties keep float32's precision.
CACHE_FILE = 'matmul_probe.json'


def device_name() -> str:
  """The CPU's model name (/proc/cpuinfo), or the accelerator's device kind."""
  device = jax.devices()[0]
  if device.platform != 'cpu':
    return device.device_kind
  try:
    with open('/proc/cpuinfo') as f:
      for line in f:
        if line.startswith('model name'):
          return line.split(':', 1)[1].strip()
  except OSError:
    pass
  return platform.processor() or platform.machine()


def probe_key() -> str:
  """What the probe's rates depend on: the device, how many cores XLA uses, the compiler."""
  return f'{jax.default_backend()}: {device_name()}, {os.cpu_count()} cores, jaxlib {jaxlib.__version__}'


def cache_path() -> str:
  root = os.environ.get('LM_CACHE_DIR') or os.path.join(
      os.environ.get('XDG_CACHE_HOME') or os.path.expanduser('~/.cache'), 'lm')
  return os.path.join(root, CACHE_FILE)


def matmul_timer(dtype: str, n: int = PROBE_SIZE) -> Callable[[], float]:
  """A function that times one n^3 matmul of `dtype`'s kind (bfloat16: bf16 inputs, float32 accumulation) and
  returns its seconds; compiled and run once before it returns."""
  a = jnp.ones((n, n), {'float32': jnp.float32, 'bfloat16': jnp.bfloat16}[dtype])
  f = jax.jit(lambda x, y: jnp.matmul(x, y, preferred_element_type=jnp.float32))
  f(a, a).block_until_ready()

  def seconds() -> float:
    start = time.perf_counter()
    f(a, a).block_until_ready()
    return time.perf_counter() - start
  return seconds


def measure_matmul_flops(n: int = PROBE_SIZE, seconds: float = PROBE_SECONDS) -> dict[str, float]:
  """FLOP/s of each dtype's n^3 matmul: the best call of several, timed in turns for about `seconds` each."""
  timers = {dtype: matmul_timer(dtype, n) for dtype in DTYPES}
  best = dict.fromkeys(DTYPES, float('inf'))
  start = time.perf_counter()
  while time.perf_counter() - start < seconds * len(DTYPES) or min(best.values()) == float('inf'):
    for dtype, timer in timers.items():
      best[dtype] = min(best[dtype], timer())
  return {dtype: 2 * n**3 / s for dtype, s in best.items()}


@functools.lru_cache(maxsize=None)
def matmul_flops() -> dict[str, float]:
  """This device's matmul FLOP/s by dtype: from the cache file, else measured (and cached)."""
  path, key = cache_path(), probe_key()
  try:
    with open(path) as f:
      cached = json.load(f)
  except (OSError, ValueError):  # None yet, or unreadable: measure again and rewrite it.
    cached = {}
  if isinstance(cached.get(key), dict) and set(cached[key]) == set(DTYPES):
    return cached[key]
  rates = measure_matmul_flops()
  try:
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path + f'.{os.getpid()}.tmp', 'w') as f:
      json.dump({**(cached if isinstance(cached, dict) else {}), key: rates}, f, indent=1)
    os.replace(path + f'.{os.getpid()}.tmp', path)
  except OSError:  # A read-only home: the probe is cheap enough to repeat.
    pass
  return rates


def resolve_dtype(dtype: str) -> str:
  """`dtype`, with 'auto' resolved: bfloat16 on GPU and TPU; on CPU bfloat16 where the probe measures its
  matmuls BF16_MARGIN faster than float32's, else float32."""
  if dtype != 'auto':
    return dtype
  if jax.default_backend() != 'cpu':
    return 'bfloat16'
  rates = matmul_flops()
  return 'bfloat16' if rates['bfloat16'] > BF16_MARGIN * rates['float32'] else 'float32'


def describe_auto() -> str:
  """Why 'auto' resolves as it does here, for the run's log."""
  if jax.default_backend() != 'cpu':
    return f'{jax.default_backend()} ({device_name()}): bfloat16 inputs, float32 accumulation'
  rates = matmul_flops()
  return (f'{device_name()}: {PROBE_SIZE}^3 matmul float32 {rates["float32"] / 1e9:.0f}, bfloat16 inputs '
          f'{rates["bfloat16"] / 1e9:.0f} GFLOP/s')
