"""The matmul probe and model.dtype='auto': each forced probe result gives its answer, explicit dtypes are
untouched, the probe is short and cached per machine. (A run records and freezes the answer: test_train.py.)"""
import json
import os
import time

import pytest

from lm import flops as flops_lib
from lm import hardware
from lm import model as model_lib


@pytest.fixture
def probe(monkeypatch, tmp_path):
  """Sets what the probe measures (FLOP/s by dtype) and counts the measurements; the cache is a fresh file."""
  monkeypatch.setenv('LM_CACHE_DIR', str(tmp_path))
  hardware.matmul_flops.cache_clear()
  calls = []

  def set_rates(float32, bfloat16):
    def measure():
      calls.append(1)
      return {'float32': float32, 'bfloat16': bfloat16}
    monkeypatch.setattr(hardware, 'measure_matmul_flops', measure)
    hardware.matmul_flops.cache_clear()
  yield set_rates, calls
  hardware.matmul_flops.cache_clear()


@pytest.mark.backend('cpu')
@pytest.mark.parametrize('float32, bfloat16, want', [
    (67e9, 47e9, 'float32'),  # AVX2-only Zen 1: XLA converts bf16, slower.
    (365e9, 1835e9, 'bfloat16'),  # Sapphire Rapids' AMX.
    (100e9, 105e9, 'float32'),  # A tie within the margin keeps float32's precision.
])
def test_auto_follows_the_probe_on_cpu(probe, float32, bfloat16, want):
  set_rates, calls = probe
  set_rates(float32, bfloat16)
  assert hardware.resolve_dtype('auto') == want
  assert model_lib.ModelConfig(vocab_size=11, max_len=8).dtype == want  # The default is 'auto'.
  assert flops_lib.peak_flops(want) == {'float32': float32, 'bfloat16': bfloat16}[want]  # MFU's peak: one probe.
  assert len(calls) == 1


@pytest.mark.backend('cpu')
def test_explicit_dtypes_are_untouched(probe):
  set_rates, calls = probe
  set_rates(67e9, 47e9)
  assert model_lib.ModelConfig(vocab_size=11, max_len=8, dtype='bfloat16').dtype == 'bfloat16'
  set_rates(365e9, 1835e9)
  assert model_lib.ModelConfig(vocab_size=11, max_len=8, dtype='float32').dtype == 'float32'
  assert not calls


@pytest.mark.backend('cpu')
def test_the_probe_is_cached_per_machine_outside_the_repository(probe, tmp_path):
  set_rates, calls = probe
  set_rates(67e9, 47e9)
  hardware.resolve_dtype('auto')
  with open(tmp_path / hardware.CACHE_FILE) as f:
    cached = json.load(f)
  assert cached == {hardware.probe_key(): {'float32': 67e9, 'bfloat16': 47e9}}
  assert hardware.device_name() in hardware.probe_key()
  hardware.matmul_flops.cache_clear()  # A new process: reads the file, measures nothing.
  assert hardware.resolve_dtype('auto') == 'float32' and len(calls) == 1
  (tmp_path / hardware.CACHE_FILE).write_text('{not json')  # Corrupt: measured again, and rewritten.
  hardware.matmul_flops.cache_clear()
  assert hardware.resolve_dtype('auto') == 'float32' and len(calls) == 2
  with open(tmp_path / hardware.CACHE_FILE) as f:
    assert hardware.probe_key() in json.load(f)


@pytest.mark.backend('cpu')
def test_the_real_probe_is_short_and_measures_both_dtypes(monkeypatch, tmp_path):
  monkeypatch.setenv('LM_CACHE_DIR', str(tmp_path))
  hardware.matmul_flops.cache_clear()
  start = time.perf_counter()
  rates = hardware.matmul_flops()
  elapsed = time.perf_counter() - start
  hardware.matmul_flops.cache_clear()
  assert elapsed < 2.0, f'the probe took {elapsed:.1f}s'
  assert set(rates) == {'float32', 'bfloat16'} and all(r > 1e9 for r in rates.values()), rates
  assert os.path.exists(tmp_path / hardware.CACHE_FILE)
