"""Fakes 8 CPU devices before JAX starts, so data- and model-parallel code runs in every test.

Under CI=true a skipped test fails: there a skip means a missing dependency, service or download, which would
hide the test it skips. The one skip that stays a skip is a test marked `@pytest.mark.backend('cpu')` run on
another JAX backend: it is about the machine's hardware, which no CI setup step can install.
"""
import atexit
import json
import os
import shutil
import tempfile

# XLA flags that cut CPU compile time, which dominates the suite (tiny models, few steps): no LLVM optimisation,
# the classic loop emitters instead of the fusion emitters, one codegen split per module. Measured on a tiny
# model's train step (8-device mesh and single device): 20 s of CPU without, 10 s with; the steps run ~1.7x
# slower, a tenth of a second over 50 of them. Subprocesses inherit them (tests that set their own XLA_FLAGS
# add these).
FAST_COMPILE_FLAGS = ('--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false '
                      '--xla_cpu_parallel_codegen_split_count=1')


def _with_flags(flags: str, extra: str) -> str:
  """`flags` plus each flag of `extra` whose name it lacks: XLA_FLAGS set by hand win, and a pytest-xdist
  worker, which inherits the controller's, adds none twice."""
  names = {f.split('=')[0] for f in flags.split()}
  return ' '.join(flags.split() + [f for f in extra.split() if f.split('=')[0] not in names])


os.environ['XLA_FLAGS'] = _with_flags(os.environ.get('XLA_FLAGS', ''), FAST_COMPILE_FLAGS)
if '--xla_force_host_platform_device_count=8' not in os.environ['XLA_FLAGS'].split():
  os.environ['XLA_FLAGS'] += ' --xla_force_host_platform_device_count=8'
# One persistent compilation cache per test session, in a fresh temporary folder (so no run depends on an
# earlier one): the tests compile the same small steps again in separate tests and in subprocesses, which
# inherit these variables, as do pytest-xdist's workers (so they share the folder; only its maker removes it).
# Measured on test_train.py + test_model.py: 3m46s without, 3m20s with.
if 'LM_TEST_SESSION_DIR' not in os.environ:
  os.environ['LM_TEST_SESSION_DIR'] = tempfile.mkdtemp(prefix='lm-test-jax-cache-')
  atexit.register(shutil.rmtree, os.environ['LM_TEST_SESSION_DIR'], ignore_errors=True)
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.environ['LM_TEST_SESSION_DIR'])
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0.2')
# lm/hardware.py's matmul probe caches its rates here, not in the user's ~/.cache: it runs once per session.
os.environ['LM_CACHE_DIR'] = os.environ['LM_TEST_SESSION_DIR']

from absl import flags  # noqa: E402
import pytest  # noqa: E402

flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags.

_HARDWARE_SKIP = 'wrong backend:'  # Starts the reason of the skips that stay skips under CI=true.


def pytest_configure(config):
  config.addinivalue_line('markers', 'backend(name): runs only on that JAX backend (e.g. cpu); skipped on the '
                          'others, also under CI=true')


def pytest_runtest_setup(item):
  marker = item.get_closest_marker('backend')
  if marker is not None:
    import jax  # Here, not at the top: XLA_FLAGS must be set before JAX starts.
    if jax.default_backend() != marker.args[0]:
      pytest.skip(f'{_HARDWARE_SKIP} needs {marker.args[0]}, running on {jax.default_backend()}')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item, nextitem):
  """The notebooks' kernels start without FAST_COMPILE_FLAGS: the quickstart's 150 steps run slower under them
  (CPU time 21 s without, 42 s with). A hook every item passes, not only those under tests/."""
  if item.path.suffix != '.ipynb':
    yield
    return
  saved = dict(os.environ)
  os.environ['XLA_FLAGS'] = ' '.join(f for f in saved['XLA_FLAGS'].split() if f not in FAST_COMPILE_FLAGS.split())
  if item.path.name == 'scaling_laws.ipynb':  # It reads a sweep: a synthetic one here (tests/synthetic_sweep.py).
    import synthetic_sweep  # noqa: PLC0415  (tests/ is on the path once pytest runs)
    scratch = tempfile.mkdtemp(prefix='scaling_notebook_')
    synthetic_sweep.make(os.path.join(scratch, 'sweep'))
    synthetic_sweep.make(os.path.join(scratch, 'rerun'), seed=1)  # Other noise: the notebook compares the fits.
    os.environ.update(LM_SWEEP_DIR=os.path.join(scratch, 'sweep'), LM_RERUN_DIR=os.path.join(scratch, 'rerun'),
                      LM_FIGURES_DIR=os.path.join(scratch, 'figures'),
                      LM_NUM_BOOTSTRAP='50', LM_EXPECTED_LAW=json.dumps(synthetic_sweep.LAW))
  try:
    yield
  finally:
    os.environ.clear()
    os.environ.update(saved)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  if os.environ.get('CI') != 'true' or not report.skipped or hasattr(report, 'wasxfail'):
    return
  reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
  if reason.removeprefix('Skipped: ').startswith(_HARDWARE_SKIP):
    return
  report.outcome = 'failed'
  report.longrepr = f'skipped under CI=true, where every dependency, service and download must be there: {reason}'


import flax.linen as nn  # noqa: E402
import jax  # noqa: E402
import ml_collections  # noqa: E402
import numpy as np  # noqa: E402

from experiments import base  # noqa: E402
from lm import model as model_lib  # noqa: E402
from lm import tokenizers  # noqa: E402
from lm.data import datasets  # noqa: E402
from lm.data import tokenizer_cache  # noqa: E402

ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789 .,:'


def random_model(architecture='encoder_decoder', position='relative', max_len=128, seed=0):
  """(tokenizer, model, params): a tiny randomly initialised model over a char vocabulary of ALPHABET. Untied:
  with tied embeddings the untrained model predicts its input token (the start token 0) again and again, the
  same for every input."""
  tokenizer = tokenizers.make_tokenizer('char', [ALPHABET])
  config = model_lib.ModelConfig(vocab_size=tokenizer.vocab_size, max_len=max_len, architecture=architecture,
                                 num_layers=2, d_model=32, num_heads=4, position=position, tie_embeddings=False,
                                 dtype='float32')
  model = model_lib.build_model(config)
  params = model.init_variables(jax.random.PRNGKey(seed), target_len=8, input_len=8)['params']
  return tokenizer, model, nn.meta.unbox(params)


@pytest.fixture(scope='session')
def seq2seq():
  """A random encoder-decoder (random_model()), shared by the generation and evaluation tests."""
  return random_model()


# The data package's tests share two small data sets: 20 documents of random letters, and seq2seq digit pairs.


def data_config(**overrides) -> ml_collections.ConfigDict:
  """config.data with every key the data package reads, char tokens, rows of 16, no worker processes."""
  config = base.get_config().data.to_dict()
  config.update(tokenizer='char', seq_len=16, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope='session')
def lm_corpus(tmp_path_factory):
  """20 documents of 1..70 random letters: several shorter and longer than a row."""
  root = tmp_path_factory.mktemp('letters')
  rng = np.random.default_rng(0)
  for i in range(20):
    n = 1 + (i * 37) % 70
    (root / f'doc{i:02d}.txt').write_text(''.join(rng.choice(list('abcdefgh'), n)))
  return root


@pytest.fixture(scope='session')
def lm_config(lm_corpus):
  return data_config(name='text_files', path=str(lm_corpus), data_dir=str(lm_corpus / 'tfds'), task='lm', pack=True)


@pytest.fixture(scope='session')
def lm_tokenizer(lm_config):
  return tokenizer_cache.get_tokenizer(lm_config, None)


S2S_TEXT = '0123456789'


def s2s_records(split: str) -> list[dict]:
  """Reverse a random digit string of 1..12 digits; 60 train, 9 eval pairs."""
  rng = np.random.default_rng(len(split))
  records = []
  for _ in range(60 if split == 'train' else 9):
    digits = ''.join(rng.choice(list(S2S_TEXT), rng.integers(1, 13)))
    records.append({'question': digits.encode(), 'answer': digits[::-1].encode()})
  return records


@pytest.fixture
def s2s(monkeypatch):
  """(config, tokenizer) of s2s_records as the splits of a seq2seq data set, 'rev: ' in front of each input."""
  monkeypatch.setattr(datasets, 'load_split', lambda config, split: s2s_records(split))
  tokenizer = tokenizers.CharTokenizer(S2S_TEXT + 'rev: ')
  config = data_config(name='fake', task='seq2seq', input_key='question', target_key='answer', prefix='rev: ',
                       max_input_len=12, max_target_len=8, pack=False)
  return config, tokenizer


@pytest.fixture
def squad(monkeypatch):
  """(records, config, tokenizer): five records shaped as the squad catalogue's (an input template over two
  features, a target in a list inside a dict) as every split, read through that catalogue's feature keys."""
  records = [{'question': f'q{i}'.encode(), 'context': b'ctx', 'answers': {'text': [f'a{i}'.encode(), b'other'],
                                                                           'answer_start': [0, 0]}} for i in range(5)]
  monkeypatch.setattr(datasets, 'load_split', lambda config, split: records)
  config = data_config(name='squad', task='seq2seq', max_input_len=32, max_target_len=4, pack=False,
                       **datasets.catalogue_features('squad'))
  return records, config, tokenizer_cache.get_tokenizer(config, None)
