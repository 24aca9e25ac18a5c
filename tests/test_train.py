import contextlib
import functools
import glob
import importlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time

from conftest import FAST_COMPILE_FLAGS
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import test_checkpoint

from experiments import base
from lm import checkpoint as checkpoint_lib
from lm import errors
from lm import evaluate
from lm import first_start
from lm import hardware
from lm import model as model_lib
from lm import optim
from lm import rundir
from lm import step as step_lib
from lm import stopping
from lm import tokenizers
from lm import train
from lm.data import tasks

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = ''.join(f'{i % 7} the quick brown fox {i % 3} jumps over the lazy dog.\n' for i in range(400))


@pytest.fixture(scope='module')
def corpus_dir(tmp_path_factory):
  root = tmp_path_factory.mktemp('corpus')
  (root / 'corpus.txt').write_text(CORPUS)
  return root


def tiny_config(corpus_dir, **train_overrides):
  c = base.get_config()
  c.model.update(num_layers=2, d_model=32, num_heads=4, dtype='float32')  # Pinned: 'auto' differs by CPU.
  c.data.update(name='text_files', path=str(corpus_dir / 'corpus.txt'), data_dir=str(corpus_dir / 'tfds'),
                seq_len=32)
  c.train.update({'batch_size': 8, 'num_steps': 40, 'warmup_steps': 5, 'learning_rate': 3e-3, 'log_every': 1,
                  'eval_every': 20, 'checkpoint_every': 20, 'eval_batch_size': 8, **train_overrides})
  c.decode.sample_num_tokens = 10
  c.parallel.strategy = 'single'  # The loop's tests; layouts are test_parallel's (8 fake devices compile slower).
  return c


def read_metrics(workdir, split='train'):
  return rundir.read_metrics(str(workdir), split)


def test_loss_falls_and_run_directory_is_complete(corpus_dir, tmp_path):
  final = train.train_and_evaluate(tiny_config(corpus_dir), str(tmp_path))
  losses = [m['loss'] for m in read_metrics(tmp_path)]
  assert len(losses) == 40
  assert np.mean(losses[-5:]) < 0.6 * np.mean(losses[:5]), losses
  assert final['bits_per_byte'] < 3.0
  for name in ('config.json', 'metrics.jsonl', 'samples.txt', 'tensorboard', 'checkpoints', 'tokenizer'):
    assert os.path.exists(tmp_path / name), name
  assert os.listdir(tmp_path / 'tensorboard'), 'no TensorBoard event file'
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['20', '40']
  text = evaluate.sample_from_workdir(str(tmp_path), 'the ', num_tokens=12, temperature=0.0)
  assert text.startswith('the ') and len(text) <= 4 + 12
  assert text == evaluate.sample_from_workdir(str(tmp_path), 'the ', num_tokens=12, temperature=0.0)
  # A run made before some model options existed (its config.json lacks them) loads at their defaults.
  with open(tmp_path / 'config.json') as f:
    saved = json.load(f)
  for key in ('architecture', 'pointer_generator', 'kernel_init'):
    del saved['model'][key]
  with open(tmp_path / 'config.json', 'w') as f:
    json.dump(saved, f)
  assert text == evaluate.sample_from_workdir(str(tmp_path), 'the ', num_tokens=12, temperature=0.0)
  config, *_ = rundir.load_run(str(tmp_path), rundir.load_config(str(tmp_path)))  # As eval and summarize load it.
  assert config.model.architecture == 'decoder_only' and config.model.kernel_init == 'normal'
  # The config.json of this run as the code before the one config schema wrote it (config.sample,
  # data.vocab_size, decode.max_input_len; kept in tests/data): the run still samples and evaluates alike.
  with open(os.path.join(REPO, 'tests', 'data', 'config_before_schema.json')) as f:
    kept = f.read().replace('CORPUS_DIR', str(corpus_dir))
  (tmp_path / 'config.json').write_text(kept)
  assert 'sample' in json.loads(kept) and 'spm_vocab_size' not in json.loads(kept)['data']
  assert text == evaluate.sample_from_workdir(str(tmp_path), 'the ', num_tokens=12, temperature=0.0)
  assert rundir.load_config(str(tmp_path)).decode.sample_num_tokens == 10  # Was sample.num_tokens.
  assert evaluate.evaluate_run(str(tmp_path))['loss'] == pytest.approx(final['loss'], rel=1e-5)
  accounting, = read_metrics(tmp_path, split='data')  # Train-split token accounting, logged once.
  # The 90% cut falls on a line end: train is the first 360 of the 400 lines of 49 characters, a token each, then
  # EOS. Concatenated and chunked: the first token is only read, and whole rows of 32 targets keep 17,632 of 17,640.
  assert len(''.join(CORPUS.splitlines(keepends=True)[:360])) == 360 * 49 == 17_640
  assert accounting['target_tokens'] == 17_640 // 32 * 32 == 17_632
  assert (accounting['input_tokens'] + accounting['target_tokens'] + accounting['truncated_tokens']
          == accounting['source_tokens'])
  logged = read_metrics(tmp_path)[-1]
  for key in ('bits_per_byte', 'tokens_seen', 'flops_seen', 'wall_s', 'learning_rate', 'grad_norm',
              'tokens_per_s', 'mfu'):
    assert np.isfinite(logged[key]), key


def final_params(workdir):
  ckpt = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=5)
  step = ckpt.latest_step()
  restored = ckpt.restore(step)  # As saved: a dict tree, enough to compare numbers.
  ckpt.close()
  return step, restored['params']


class StopAtIteration:
  """Stands in for the signal handler's request list: reads as 'stop requested' from the k-th check on."""

  def __init__(self, k):
    self.checks, self.k, self.received_at = 0, k, time.perf_counter()

  signal = 'SIGTERM'

  def __bool__(self):
    self.checks += 1
    return self.checks >= self.k

  def interruptible(self, phase):
    """As StopRequests': a phase entered once the stop is requested stops at once."""
    if self.checks >= self.k:
      raise stopping.StopRequested
    return contextlib.nullcontext()


def assert_resume_is_exact(config, tmp_path, monkeypatch, *, stop_after):
  """The run straight through == the same run stopped (as by SIGTERM) after `stop_after` steps, then resumed:
  the same losses at every step and bit-identical final params."""
  steps = config.train.num_steps
  straight, split = tmp_path / 'straight', tmp_path / 'split'
  train.train_and_evaluate(config, str(straight))
  with monkeypatch.context() as patch:
    patch.setattr(stopping, 'stop_requests',
                  contextlib.contextmanager(lambda: (yield StopAtIteration(stop_after))))
    with pytest.raises(errors.Stopped, match=f'stopped at step {stop_after}'):
      train.train_and_evaluate(config, str(split))
  assert os.listdir(split / 'checkpoints') == [str(stop_after)]
  train.train_and_evaluate(config, str(split))
  a, b = read_metrics(straight), read_metrics(split)
  assert [m['step'] for m in b] == list(range(1, steps + 1))
  assert [m['loss'] for m in a] == [m['loss'] for m in b]
  (step_a, params_a), (step_b, params_b) = final_params(straight), final_params(split)
  assert step_a == step_b == steps
  jax.tree.map(np.testing.assert_array_equal, params_a, params_b)


def test_resume_is_exact(corpus_dir, tmp_path, monkeypatch):
  """12 steps straight == the same run stopped (as by SIGTERM) after step 7, then resumed; dropout on."""
  config = tiny_config(corpus_dir, num_steps=12, checkpoint_every=100, eval_every=100)
  config.model.dropout = 0.1  # Exercises the RNG restored with the state.
  assert_resume_is_exact(config, tmp_path, monkeypatch, stop_after=7)


def test_a_run_that_dies_after_its_checkpoint_resumes_with_a_marker_and_each_step_once(corpus_dir, tmp_path):
  """Killed at step 8 (its last checkpoint step 5) with a row cut short, then resumed: metrics.jsonl keeps every
  line and gains a 'resume' row at step 5; read_metrics gives each step once, steps 6-8 as the resumed run redid
  them."""
  config = tiny_config(corpus_dir, num_steps=12, checkpoint_every=5, eval_every=8)
  config.decode.sample_num_tokens = 0

  def killed(run, step, params):
    raise RuntimeError('killed')
  with pytest.raises(RuntimeError, match='killed'):
    train.train_and_evaluate(config, str(tmp_path), eval_hook=killed)  # At step 8's validation.
  with open(tmp_path / 'metrics.jsonl', 'a') as f:
    f.write('{"step": 9, "split": "train", "lo')  # And a row half written.
  assert [m['step'] for m in read_metrics(tmp_path)] == list(range(1, 9))
  before = (tmp_path / 'metrics.jsonl').read_text()
  train.train_and_evaluate(config, str(tmp_path))
  assert (tmp_path / 'metrics.jsonl').read_text().startswith(before)  # Appended to, never rewritten.
  rows = read_metrics(tmp_path, split=None)
  marker, = [i for i, r in enumerate(rows) if r['split'] == 'resume']
  assert (rows[marker]['step'], rows[marker]['pid']) == (5, os.getpid())
  assert [r['step'] for r in rows[:marker] if r['split'] == 'train'] == [1, 2, 3, 4, 5]  # Kept from the first.
  assert [r['step'] for r in rows[marker:] if r['split'] == 'train'] == list(range(6, 13))  # Redone and new.
  assert [r['step'] for r in read_metrics(tmp_path, split='validation')] == [8, 12]


def test_a_second_trainer_is_refused_while_the_first_finishes(corpus_dir, tmp_path):
  """`lm.main train` in another process on a run directory this process trains in stops at once, naming this
  process, and writes nothing; this run then finishes as if alone."""
  refusals = []

  def second_trainer(run, step, params):  # At the first validation point, mid-run.
    if not refusals:
      refusals.append(subprocess.run(
          [sys.executable, '-m', 'lm.main', 'train', f'--workdir={tmp_path}'], capture_output=True, text=True,
          cwd=REPO, env={**os.environ, 'XLA_FLAGS': FAST_COMPILE_FLAGS}, timeout=120))
  config = tiny_config(corpus_dir, num_steps=6, eval_every=3, checkpoint_every=100)
  config.decode.sample_num_tokens = 0
  train.train_and_evaluate(config, str(tmp_path), eval_hook=second_trainer)
  refused, = refusals
  assert refused.returncode != 0
  assert (f'{tmp_path} is being trained by pid {os.getpid()} on host {socket.gethostname()} since '
          in refused.stderr), refused.stderr
  assert 'wait for that run to finish' in refused.stderr and 'another --workdir' in refused.stderr
  assert [m['step'] for m in read_metrics(tmp_path)] == list(range(1, 7))
  assert [r['split'] for r in read_metrics(tmp_path, split=None)].count('setup') == 1  # None from the refused.
  assert rundir.load_config(str(tmp_path)).train.num_steps == 6  # Its config.json is this run's.
  assert (tmp_path / 'lock').read_text() == ''  # Released at the end.


def test_a_multi_process_job_stops_on_every_process_when_another_holds_the_workdir(tmp_path, monkeypatch):
  """Process 0 takes the lock, its job's other processes none; refused, all raise the same WorkdirBusy (here each
  process of a two-process job in turn, process 0's answer broadcast by hand)."""
  def as_process(index, process_0_refused):
    monkeypatch.setattr(jax, 'process_index', lambda: index)
    monkeypatch.setattr(first_start, 'process_0s', lambda value: int(process_0_refused) if index else value)
    return train.lock_workdir(str(tmp_path))

  with rundir.WorkdirLock(str(tmp_path)):  # Another job's process 0.
    refusals = []
    for index in (0, 1):
      with pytest.raises(errors.WorkdirBusy) as refused:
        as_process(index, process_0_refused=True)
      refusals.append(str(refused.value))
    assert refusals[0] == refusals[1] and f'by pid {os.getpid()} on host ' in refusals[0]
  assert as_process(1, process_0_refused=False) is None  # Process 0 of its job holds the lock.
  lock = as_process(0, process_0_refused=False)
  assert json.loads((tmp_path / 'lock').read_text())['pid'] == os.getpid()
  lock.release()


def test_logged_speed_is_the_trainings_without_eval_time(corpus_dir, tmp_path):
  """A slow eval hook (0.3 s at each of 4 validation points) leaves the logged train tokens/s as it is, and its
  time is logged as eval time. Windows of 20 steps: the first steps after the hook's idle 0.3 s run slower (by ~70 ms
  in all, measured), which windows of 5 steps (~40 ms of training) could not absorb."""
  speeds, summaries = {}, {}
  for name, hook in (('plain', None), ('slow_eval', lambda run, step, params: time.sleep(0.3))):
    config = tiny_config(corpus_dir, num_steps=80, log_every=20, eval_every=20, checkpoint_every=1000)
    train.train_and_evaluate(config, str(tmp_path / name), eval_hook=hook)
    rows = read_metrics(tmp_path / name)
    speeds[name] = np.median([r['tokens_per_s'] for r in rows[1:]])  # The first window compiles the step.
    summaries[name], = read_metrics(tmp_path / name, split='summary')
  # Counted in, the hook alone would take 0.3 s of each later window of 20 steps (~0.2 s of training here).
  assert 0.5 < speeds['slow_eval'] / speeds['plain'] < 2.0, speeds
  assert summaries['slow_eval']['eval_s'] > 4 * 0.3, summaries  # The hook's time is eval time.
  for summary in summaries.values():
    assert summary['compile_s'] > 0 and summary['train_s'] > 0
    assert summary['train_s'] + summary['eval_s'] + summary['compile_s'] + summary['checkpoint_s'] <= (
        summary['wall_s'])


def test_auto_dtype_is_resolved_once_recorded_and_kept_on_resume(corpus_dir, tmp_path, monkeypatch, capsys):
  """model.dtype='auto' (the default) resolves by the probe at a run's first start; config.json and
  metrics.jsonl record it; a resumed run keeps it whatever the probe says now; an explicit dtype stays."""
  rates = {'float32': 365e9, 'bfloat16': 1835e9}
  monkeypatch.setattr(hardware, 'matmul_flops', lambda: rates)
  config = tiny_config(corpus_dir, num_steps=2, log_every=2, eval_every=100, checkpoint_every=2)
  config.decode.sample_num_tokens = 0
  config.model.dtype = 'auto'
  train.train_and_evaluate(config, str(tmp_path / 'auto'))
  assert rundir.load_config(str(tmp_path / 'auto')).model.dtype == 'bfloat16'
  assert 'model.dtype: bfloat16 (auto: ' in capsys.readouterr().out
  rates.update(float32=67e9, bfloat16=47e9)  # As if the run moved to an AVX2 machine, then resumed there.
  config.train.num_steps = 4
  train.train_and_evaluate(config, str(tmp_path / 'auto'))
  assert rundir.load_config(str(tmp_path / 'auto')).model.dtype == 'bfloat16'
  assert 'recorded in' in capsys.readouterr().out
  rows = read_metrics(tmp_path / 'auto', split='setup')
  assert [(r['step'], r['dtype']) for r in rows] == [(0, 'bfloat16'), (2, 'bfloat16')], rows
  assert rows[0]['dtype_source'].startswith('auto: ') and 'recorded in' in rows[1]['dtype_source']
  assert rows[1]['peak_flops'] == 47e9 * jax.device_count()
  train.train_and_evaluate(config, str(tmp_path / 'fresh'))  # A new run on this machine: float32.
  assert rundir.load_config(str(tmp_path / 'fresh')).model.dtype == 'float32'
  config.model.dtype = 'bfloat16'
  train.train_and_evaluate(config, str(tmp_path / 'explicit'))
  assert read_metrics(tmp_path / 'explicit', split='setup')[0]['dtype_source'] == 'set by the config'
  assert rundir.load_config(str(tmp_path / 'explicit')).model.dtype == 'bfloat16'


def test_a_size_is_recorded_in_config_json_and_a_resume_rebuilds_the_same_model(corpus_dir, tmp_path, monkeypatch,
                                                                               capsys):
  """model.size fills the shape keys left at 0 (num_layers here is set, and stays); config.json records the
  filled-in shape, which a resume of the same size takes even if the ladder has changed since."""
  config = tiny_config(corpus_dir, num_steps=2, log_every=2, eval_every=100, checkpoint_every=2)
  config.decode.sample_num_tokens = 0
  config.model.update(size='100k', num_layers=1, d_model=0, num_heads=0)
  workdir = str(tmp_path / 'run')
  train.train_and_evaluate(config, workdir)
  recorded = rundir.load_config(workdir).model
  assert (recorded.size, recorded.num_layers, recorded.d_model, recorded.num_heads) == ('100k', 1, 64, 4)
  assert 'model.size: 100k (d_model=64, num_heads=4 from the ladder)' in capsys.readouterr().out
  monkeypatch.setitem(model_lib.SIZES, '100k', model_lib.Size(2, 96, 4))  # A later version's ladder.
  config.train.num_steps = 4
  train.train_and_evaluate(config, workdir)  # Restores step 2: the same shapes.
  assert 'resumed from' in (out := capsys.readouterr().out) and 'd_model=64, num_heads=4 recorded in' in out
  assert rundir.load_config(workdir).model == recorded
  assert rundir.load_run(workdir).model.config.d_model == 64  # Eval and sample read config.json.


def test_time_budget_fits_the_steps_once_and_a_resume_keeps_them(corpus_dir, tmp_path, capsys):
  config = tiny_config(corpus_dir, num_steps=100_000, time_budget_s=0.3, log_every=10, eval_every=100_000,
                       checkpoint_every=100_000)
  config.decode.sample_num_tokens = 0
  train.train_and_evaluate(config, str(tmp_path))
  steps = rundir.load_config(str(tmp_path)).train.num_steps
  assert 1 <= steps < 100_000
  assert f'train.num_steps: {steps} (time_budget_s=0.3 at ' in capsys.readouterr().out
  rows = read_metrics(tmp_path)
  assert rows[-1]['step'] == steps
  train_s, = [r['train_s'] for r in read_metrics(tmp_path, split='summary')]
  assert 0.3 / 3 < train_s < 0.3 * 3, train_s  # The budget is the training's time, as the steps were timed.
  train.train_and_evaluate(config, str(tmp_path))  # Finished: resumes at its last step, trains none.
  assert f'train.num_steps: {steps} (fitted at the run' in capsys.readouterr().out
  assert read_metrics(tmp_path, split='setup')[-1]['num_steps'] == steps
  config.train.num_steps = steps + 2  # A later finish line than the fitted one: the fitted one stays.
  train.train_and_evaluate(config, str(tmp_path))
  assert read_metrics(tmp_path)[-1]['step'] == steps


def test_eval_batches_caps_the_validation_passes_before_the_last(corpus_dir, tmp_path, monkeypatch):
  passes, evaluate = [], step_lib.evaluate

  def counting(eval_batch, batches):
    batches = list(batches)
    passes.append(len(batches))
    return evaluate(eval_batch, batches)
  monkeypatch.setattr(step_lib, 'evaluate', counting)
  config = tiny_config(corpus_dir, num_steps=4, eval_every=2, eval_batches=1)
  config.decode.sample_num_tokens = 0
  train.train_and_evaluate(config, str(tmp_path))
  assert passes[0] == 1 and passes[1] > 1, passes  # The last pass, the run's figure, is the whole split.
  assert [r['eval_batches'] for r in read_metrics(tmp_path, split='validation')] == [1, 0]


def test_only_the_last_checkpoints_are_kept(corpus_dir, tmp_path):
  train.train_and_evaluate(tiny_config(corpus_dir, num_steps=20, checkpoint_every=5, keep_checkpoints=2,
                                       eval_every=100), str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints'), key=int) == ['15', '20']


def test_bad_config_values_name_the_key(corpus_dir):
  cases = {('train', 'learning_rate', -1.0): 'train.learning_rate=-1.0',
           ('train', 'batch_size', 12): 'train.batch_size=12 must be divisible by the data x fsdp mesh axes (8)',
           ('model', 'num_heads', 5): 'model.num_heads=5 does not divide model.d_model=32',
           ('model', 'position', 'alibi'): "model.position='alibi'",
           ('data', 'seq_len', 0): 'data.seq_len=0',
           ('train', 'schedule', 'wsd'): None,
           ('model', 'max_len', 16): 'model.max_len=16 must be 0 or >= data.seq_len (32)',
           ('decode', 'sample_temperature', -0.5): 'decode.sample_temperature=-0.5',
           ('model', 'attention', 'cudnn'): "model.attention='cudnn' needs model.dtype='bfloat16'",
           ('model', 'kernel_init', 'xavier'): "model.kernel_init='xavier'",
           ('data', 'example_input_len', 513): 'data.example_input_len=513 must be between 0 and data.max_input_len',
           ('data', 'pack', True): None,
           ('train', 'label_smoothing', 1.0): 'train.label_smoothing=1.0 must be in'}
  for (group, key, value), message in cases.items():
    c = tiny_config(corpus_dir)
    c.parallel.strategy = 'mesh'  # Over the 8 fake devices: the batch must divide among them.
    c[group][key] = value
    if message is None and key == 'schedule':  # wsd: warmup 5 + decay 20% of 40 steps fits; 90% does not.
      train.validate_config(c)
      c.train.decay_fraction, message = 0.9, 'train.decay_fraction=0.9 leaves no room'
    elif message is None:  # Packing is fine until combined with cuDNN's one-document-per-row attention.
      train.validate_config(c)
      c.model.update(attention='cudnn', dtype='bfloat16')
      message = "data.pack=True cannot be combined with model.attention='cudnn'"
    with pytest.raises(ValueError, match=message.replace('(', r'\(').replace(')', r'\)')):
      train.validate_config(c)


def test_unknown_config_key_stops_the_command_line(tmp_path):
  result = subprocess.run(
      [sys.executable, '-m', 'lm.main', 'train', f'--config={REPO}/experiments/shakespeare.py',
       '--config.model.num_layer=2', f'--workdir={tmp_path}'],
      capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode != 0
  assert 'num_layer' in result.stderr
  assert not os.path.exists(tmp_path / 'checkpoints')


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus_dir, tmp_path, monkeypatch):
  real_step = step_lib.train_step

  def poisoned_step(state, batch, **kwargs):
    state, metrics = real_step(state, batch, **kwargs)
    metrics['loss'] = jnp.where(state.step >= 7, jnp.nan, metrics['loss'])  # The 7th step goes bad.
    return state, metrics

  monkeypatch.setattr(step_lib, 'train_step', poisoned_step)
  with pytest.raises(errors.NonFiniteLoss, match=rf'loss=nan .* at step 7: .*; step 6 kept in {tmp_path}'):
    train.train_and_evaluate(tiny_config(corpus_dir, checkpoint_every=3), str(tmp_path))
  assert sorted(os.listdir(tmp_path / 'checkpoints')) == ['3', '6']


def test_nan_loss_before_any_checkpoint_says_none_is_saved(corpus_dir, tmp_path, monkeypatch):
  real_step = step_lib.train_step

  def poisoned_step(state, batch, **kwargs):
    state, metrics = real_step(state, batch, **kwargs)
    metrics['loss'] = jnp.where(state.step >= 2, jnp.nan, metrics['loss'])
    return state, metrics

  monkeypatch.setattr(step_lib, 'train_step', poisoned_step)
  with pytest.raises(errors.NonFiniteLoss, match=r'at step 2: .*no checkpoint saved yet .*start again'):
    train.train_and_evaluate(tiny_config(corpus_dir, checkpoint_every=3), str(tmp_path))
  assert not os.listdir(tmp_path / 'checkpoints')


def test_sigterm_saves_a_checkpoint_then_resume_finishes(corpus_dir, tmp_path):
  config_args = [f'--config={REPO}/experiments/shakespeare.py', f'--workdir={tmp_path}',
                 '--config.model.num_layers=1', '--config.model.d_model=32', '--config.data.name=text_files',
                 f'--config.data.path={corpus_dir / "corpus.txt"}', f'--config.data.data_dir={corpus_dir / "tfds"}',
                 '--config.data.seq_len=32', '--config.train.batch_size=8', '--config.train.log_every=1',
                 '--config.train.checkpoint_every=100000', '--config.train.eval_batch_size=8',
                 '--config.decode.sample_num_tokens=5']
  env = {**os.environ, 'PYTHONPATH': REPO, 'XLA_FLAGS': FAST_COMPILE_FLAGS}  # One device.
  proc = subprocess.Popen([sys.executable, '-m', 'lm.main', 'train', *config_args,
                           '--config.train.num_steps=100000'], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True, cwd=REPO, env=env)
  deadline = time.time() + 120
  for line in proc.stdout:
    if line.startswith('step') and 'loss' in line and int(line.split()[1].split('/')[0]) >= 3:
      proc.send_signal(signal.SIGTERM)
      break
    assert time.time() < deadline, 'training never reached step 3'
  output = proc.stdout.read()
  assert proc.wait(timeout=60) == errors.REQUEUE_EXIT_CODE, output
  assert 'received SIGTERM' in output and 'Rerun the same command to resume' in output
  steps = [int(s) for s in os.listdir(tmp_path / 'checkpoints')]
  assert len(steps) == 1 and 3 <= steps[0] < 100000
  # Resuming with a finish line just past the saved step completes from there.
  result = subprocess.run([sys.executable, '-m', 'lm.main', 'train', *config_args,
                           f'--config.train.num_steps={steps[0] + 2}'], capture_output=True, text=True, cwd=REPO,
                          env=env, timeout=120)
  assert result.returncode == 0, result.stdout + result.stderr
  assert f'resumed from {tmp_path / "checkpoints"} at step {steps[0]}' in result.stdout
  assert 'done: 2 steps' in result.stdout
  everything = output + result.stdout + result.stderr  # Library logging (absl's, tfds') is off below ERROR.
  assert 'Using custom data configuration' not in everything and 'WARNING:absl' not in everything
  assert not re.search(r'^[IW]\d{4} \d\d:\d\d', everything, re.M), everything


# ----------------------------------------------------------------------------------------------------------
# Faults: a checkpoint that cannot be read, a process killed while saving, a full disk.


def losses_by_step(workdir):
  """{step: loss} of the train rows; a step logged twice (redone after a restart) counts as its last row."""
  return {row['step']: row['loss'] for row in read_metrics(workdir)}


def fault_config(corpus_dir, **train_overrides):
  config = tiny_config(corpus_dir, **{'num_steps': 6, 'checkpoint_every': 2, 'eval_every': 100, **train_overrides})
  config.decode.sample_num_tokens = 0
  return config


def test_resume_falls_back_past_an_unreadable_checkpoint(corpus_dir, tmp_path, monkeypatch, capsys):
  """Stopped after step 4 (checkpoints 2 and 4), step 4's arrays deleted: the resume warns, moves step 4 aside
  whole, resumes from step 2 and ends as the run straight through does."""
  config = fault_config(corpus_dir, keep_checkpoints=2)
  straight, split = tmp_path / 'straight', tmp_path / 'split'
  train.train_and_evaluate(config, str(straight))
  with monkeypatch.context() as patch:
    patch.setattr(stopping, 'stop_requests', contextlib.contextmanager(lambda: (yield StopAtIteration(4))))
    with pytest.raises(errors.Stopped, match='stopped at step 4'):
      train.train_and_evaluate(config, str(split))
  checkpoints = split / 'checkpoints'
  assert sorted(os.listdir(checkpoints)) == ['2', '4']
  test_checkpoint.delete_arrays(checkpoints / '4')  # Its metadata stays, and matches: damage, not another model.
  damaged = test_checkpoint.files_under(checkpoints / '4')
  capsys.readouterr()
  train.train_and_evaluate(config, str(split))
  out = capsys.readouterr().out
  assert f'warning: cannot read checkpoint step 4 in {checkpoints}/4 (ValueError: ' in out
  assert f'): moved it aside to {checkpoints}/unrestorable-4 (kept, never deleted); trying the step before' in out
  assert f'resumed from {checkpoints} at step 2' in out
  # Steps 4 and 6 saved again; keeping 2, orbax deleted step 2 but not the step moved aside.
  assert sorted(os.listdir(checkpoints)) == ['4', '6', 'unrestorable-4']
  assert test_checkpoint.files_under(checkpoints / 'unrestorable-4') == damaged
  assert losses_by_step(split) == losses_by_step(straight) and sorted(losses_by_step(split)) == [1, 2, 3, 4, 5, 6]
  jax.tree.map(np.testing.assert_array_equal, final_params(straight)[1], final_params(split)[1])


def test_with_no_checkpoint_left_to_restore_the_run_stops_unless_told_to_restart(corpus_dir, tmp_path, capsys):
  config = fault_config(corpus_dir, num_steps=2)
  train.train_and_evaluate(config, str(tmp_path))
  first = losses_by_step(tmp_path)
  checkpoints = tmp_path / 'checkpoints'
  test_checkpoint.write_garbage(checkpoints / '2')
  damaged = test_checkpoint.files_under(checkpoints / '2')
  for _ in range(2):  # The rerun too: with the step moved aside, it does not start again silently.
    with pytest.raises(errors.CheckpointError, match=(
        rf'no checkpoint in {checkpoints} can be restored; moved aside, never deleted: {checkpoints}/unrestorable-2\. '
        r'To start again from step 0, set --config.train.restart_if_unrestorable=True')):
      train.train_and_evaluate(config, str(tmp_path))
  assert os.listdir(checkpoints) == ['unrestorable-2']
  assert test_checkpoint.files_under(checkpoints / 'unrestorable-2') == damaged
  capsys.readouterr()
  config.train.restart_if_unrestorable = True
  train.train_and_evaluate(config, str(tmp_path))
  assert (f'warning: no checkpoint in {checkpoints} can be restored (moved aside: {checkpoints}/unrestorable-2); '
          'starting again from step 0') in capsys.readouterr().out
  assert losses_by_step(tmp_path) == first  # Step 0's state and data: the first run again.
  assert sorted(os.listdir(checkpoints)) == ['2', 'unrestorable-2']


# Run in a subprocess: trains fault_config(keep_checkpoints=1) and SIGKILLs itself in orbax's commit of step 6,
# when its first item (state or data) is written and the rest may not be: orbax renames each item's temporary
# directory, then the step's, to commit them (AtomicRenameTemporaryPath.finalize, orbax-checkpoint 0.12).
KILLED_WHILE_SAVING = """
import os, pathlib, signal, sys
from orbax.checkpoint._src.path import atomicity
import test_train

commit = atomicity.AtomicRenameTemporaryPath.finalize

async def killing_commit(self):
  if '/6.orbax-checkpoint-tmp' in str(self.get()):
    os.kill(os.getpid(), signal.SIGKILL)
  return await commit(self)

atomicity.AtomicRenameTemporaryPath.finalize = killing_commit
test_train.train.train_and_evaluate(test_train.fault_config(pathlib.Path(sys.argv[1]), keep_checkpoints=1), sys.argv[2])
"""


def test_a_run_killed_while_writing_a_checkpoint_resumes_from_the_one_before(corpus_dir, tmp_path, capsys):
  env = {**os.environ, 'PYTHONPATH': os.pathsep.join([REPO, os.path.join(REPO, 'tests')])}
  killed = subprocess.run([sys.executable, '-c', KILLED_WHILE_SAVING, str(corpus_dir), str(tmp_path)],
                          capture_output=True, text=True, cwd=REPO, env=env, timeout=300)
  assert killed.returncode == -signal.SIGKILL, killed.stdout + killed.stderr
  checkpoints = tmp_path / 'checkpoints'
  # Step 4, the one before (keeping 1), is deleted only once step 6 is complete.
  assert sorted(os.listdir(checkpoints)) == ['4', '6.orbax-checkpoint-tmp']
  before = losses_by_step(tmp_path)
  assert sorted(before) == [1, 2, 3, 4, 5, 6]  # Each row is flushed as it is logged.
  train.train_and_evaluate(fault_config(corpus_dir, keep_checkpoints=1), str(tmp_path))
  assert f'resumed from {checkpoints} at step 4' in capsys.readouterr().out
  assert os.listdir(checkpoints) == ['6']  # The unfinished step was removed at the start.
  assert losses_by_step(tmp_path) == before  # Steps 5 and 6 again, as the killed run took them.


def test_a_full_disk_while_writing_a_checkpoint_stops_the_run_keeping_the_one_before(corpus_dir, tmp_path,
                                                                                      monkeypatch):
  """Step 4's metadata files go to /dev/full, which fails every write with ENOSPC: orbax's background thread fails,
  and the run stops at the next save (step 6), keeping step 2 (of 1 kept)."""
  config = fault_config(corpus_dir, keep_checkpoints=1)
  checkpoints = tmp_path / 'checkpoints'
  with monkeypatch.context() as patch:
    test_checkpoint.write_to_dev_full(patch, 4, 'metadata')
    with pytest.raises(errors.DiskFullError) as error:
      train.train_and_evaluate(config, str(tmp_path))
  assert error.match(rf'no space left on the disk of {checkpoints}: writing checkpoint step 4 to {checkpoints}/4 '
                     r'failed \(OSError: \[Errno 28\] No space left on device\)\. The newest complete checkpoint, '
                     rf'step 2, is kept in {checkpoints}/2; free space, then rerun the same command to resume from it')
  before = losses_by_step(tmp_path)
  assert sorted(before) == [1, 2, 3, 4, 5, 6]
  train.train_and_evaluate(config, str(tmp_path))  # Space again: resumes from step 2.
  assert sorted(os.listdir(checkpoints)) == ['6']
  assert losses_by_step(tmp_path) == before


def test_a_full_disk_while_writing_metrics_stops_the_run_keeping_the_rows(corpus_dir, tmp_path, monkeypatch):
  """After step 3's train row, metrics.jsonl's file descriptor is made /dev/full's (dup2): the kernel fails the
  write of step 4's row with ENOSPC."""
  real_write, real_save = rundir.MetricsLog.write, checkpoint_lib.Checkpointer.save

  def write_then_fill_the_disk(self, step, split, metrics):
    real_write(self, step, split, metrics)
    if (step, split) == (3, 'train'):
      full = os.open('/dev/full', os.O_WRONLY)
      os.dup2(full, self._jsonl.fileno())
      os.close(full)

  def save_and_wait(self, *args):  # The newest complete checkpoint at the failure is then step 2, always.
    real_save(self, *args)
    self.wait()

  config = fault_config(corpus_dir)
  with monkeypatch.context() as patch:
    patch.setattr(rundir.MetricsLog, 'write', write_then_fill_the_disk)
    patch.setattr(checkpoint_lib.Checkpointer, 'save', save_and_wait)
    with pytest.raises(errors.DiskFullError) as error:
      train.train_and_evaluate(config, str(tmp_path))
  metrics, checkpoints = tmp_path / 'metrics.jsonl', tmp_path / 'checkpoints'
  assert error.match(rf'no space left on the disk of {metrics}: writing the train row of step 4 failed \(No space '
                     r'left on device\)\. The rows written before it are kept \(the last may be cut short\), and the '
                     rf'checkpoints in {checkpoints} are untouched \(the newest complete: step 2\); free space')
  before = losses_by_step(tmp_path)
  assert sorted(before) == [1, 2, 3]
  train.train_and_evaluate(config, str(tmp_path))  # Space again: resumes from step 2.
  after = losses_by_step(tmp_path)
  assert sorted(after) == [1, 2, 3, 4, 5, 6] and {step: after[step] for step in before} == before


# ----------------------------------------------------------------------------------------------------------
# Encoder-decoder runs: seq2seq and span corruption, resume, fine-tuning from a pretrained run.


def seq2seq_config(root, task='seq2seq', **train_overrides):
  """A tiny T5-style model reversing 6-digit strings (char tokenizer), or span-corrupting them (SentencePiece);
  one device and one layer each side, since compiling dominates these tests."""
  c = base.get_config()
  c.model.update(architecture='encoder_decoder', num_layers=1, d_model=32, num_heads=4, position='relative',
                 norm='rmsnorm', mlp='gated_gelu', use_bias=False)
  c.parallel.strategy = 'single'
  c.data.update(name='reverse', task=task, data_dir=str(root / 'tfds'), synthetic_length=6, synthetic_examples=400,
                max_input_len=8, max_target_len=8)
  if task == 'span_corruption':
    c.data.update(tokenizer='sentencepiece', spm_vocab_size=400, max_input_len=16, max_target_len=8)
  c.train.update({'batch_size': 16, 'num_steps': 30, 'warmup_steps': 5, 'learning_rate': 1e-2, 'log_every': 1,
                  'eval_every': 15, 'checkpoint_every': 15, 'eval_batch_size': 16, **train_overrides})
  c.decode.sample_num_tokens = 0  # No end-of-training sample (its decoder compiles): one test looks at it.
  return c


@pytest.fixture(scope='module')
def digits_root(tmp_path_factory):
  return tmp_path_factory.mktemp('digits')


def test_encoder_decoder_learns_to_reverse_and_predicts(digits_root, tmp_path):
  config = seq2seq_config(digits_root, num_steps=40)
  config.model.num_layers = 2
  config.parallel.strategy = 'mesh'  # Over the 8 fake devices: the encoder-decoder's params shard too.
  config.decode.sample_num_tokens = 1  # Any but 0: the end-of-training sample is a few validation predictions.
  final = train.train_and_evaluate(config, str(tmp_path))
  losses = [m['loss'] for m in read_metrics(tmp_path)]
  assert len(losses) == 40
  assert np.mean(losses[-5:]) < 0.75 * np.mean(losses[:5]), losses
  assert np.isfinite(final['loss']) and 0 < final['accuracy'] <= 1
  logged = read_metrics(tmp_path)[-1]
  assert logged['mfu'] > 0
  # 40 steps of 16 rows, FLOPs per row counted by hand in PaLM's accounting: 6 per weight per token it is applied
  # to, plus 12 x layers x heads x head width per token per attended position. Width 32, 4 heads of 8, a gated MLP
  # (3 kernels of 32 x 128), 2 layers each side, 8 input and 8 target positions, vocab 12 (pad, EOS, 10 digits).
  assert tokenizers.load_tokenizer(str(tmp_path / 'tokenizer')).vocab_size == 12
  attention, cross_qo, cross_kv, mlp = 4 * 32 * 32, 2 * 32 * 32, 2 * 32 * 32, 3 * 32 * 128
  encoder = 8 * (6 * 2 * (attention + mlp) + 12 * 2 * 32 * 8)
  decoder = 8 * (6 * (2 * (attention + cross_qo + mlp) + 32 * 12) + 12 * 2 * 32 * (8 + 8)) + 8 * 6 * 2 * cross_kv
  assert logged['flops_seen'] == 40 * 16 * (encoder + decoder) == 40 * 16 * 3_704_832
  # The end-of-training sample: validation inputs, greedy predictions, targets.
  samples = (tmp_path / 'samples.txt').read_text().splitlines()
  assert samples[0].startswith('--- step 40, validation input -> prediction (target)')
  assert len(samples) == 5 and all(' -> ' in line for line in samples[1:]), samples
  prediction = evaluate.sample_from_workdir(str(tmp_path), '123456')
  assert set(prediction) <= set('0123456789') and len(prediction) <= 8
  assert prediction == evaluate.sample_from_workdir(str(tmp_path), '123456')


def test_encoder_decoder_resume_is_exact(digits_root, tmp_path, monkeypatch):
  """Packed seq2seq rows with dropout: 10 steps straight == stopped after step 4, then resumed."""
  config = seq2seq_config(digits_root, num_steps=10, checkpoint_every=100, eval_every=100)
  config.model.dropout = 0.1
  config.data.update(pack=True, max_input_len=16, max_target_len=16)  # Two examples per row.
  assert_resume_is_exact(config, tmp_path, monkeypatch, stop_after=4)


def test_fine_tuning_starts_from_the_pretrained_params(digits_root, tmp_path, monkeypatch, capsys):
  pretrain, finetune = tmp_path / 'pretrain', tmp_path / 'finetune'
  train.train_and_evaluate(seq2seq_config(digits_root, 'span_corruption', num_steps=6, eval_every=6,
                                          checkpoint_every=6), str(pretrain))
  config = seq2seq_config(digits_root, num_steps=3, eval_every=3, checkpoint_every=3)
  config.data.update(tokenizer='sentencepiece', spm_vocab_size=400)
  config.parallel.strategy = 'mesh'  # Params saved from one device start a run on 8.
  config.init_from = str(pretrain)
  first_params = []
  real_step = train.parallel.Launcher.step

  def recording_step(self, state, batch):
    if not first_params:  # The state the first step starts from (before it donates the buffers).
      first_params.append(jax.device_get(self.to_checkpoint(state).params))
    return real_step(self, state, batch)

  with monkeypatch.context() as patch:
    patch.setattr(train.parallel.Launcher, 'step', recording_step)
    train.train_and_evaluate(config, str(finetune))
  assert 'fresh optimizer, step 0' in capsys.readouterr().out
  step, pretrained = final_params(pretrain)
  assert step == 6
  jax.tree.map(np.testing.assert_array_equal, pretrained, first_params[0])
  assert [m['step'] for m in read_metrics(finetune)] == [1, 2, 3]
  # The fine-tuning run uses the pretrained run's vocabulary: the one its embeddings index.
  assert ((finetune / 'tokenizer' / 'tokenizer.json').read_text()
          == (pretrain / 'tokenizer' / 'tokenizer.json').read_text())
  # With a checkpoint of its own (here its last), the run resumes from it and says init_from is ignored.
  train.train_and_evaluate(config, str(finetune))
  out = capsys.readouterr().out
  assert f'resumed from {finetune / "checkpoints"} at step 3' in out and 'ignored' in out

  # Errors: a directory without checkpoints; a model whose params do not match.
  config.init_from = str(tmp_path / 'nothing')
  with pytest.raises(FileNotFoundError, match='has no checkpoint in'):
    train.train_and_evaluate(config, str(tmp_path / 'a'))
  config.init_from = str(pretrain)
  config.data.spm_vocab_size = 500
  with pytest.raises(ValueError, match=r"set data.tokenizer='sentencepiece' data.spm_model_type='unigram' "
                                       r"data.spm_vocab_size=400 \(this config has .* data.spm_vocab_size=500\)"):
    train.train_and_evaluate(config, str(tmp_path / 'b'))
  config.data.spm_vocab_size = 400
  config.model.d_ff = 48
  config.parallel.strategy = 'single'  # Compiles faster.
  with pytest.raises(ValueError, match=r'parameter \S*mlp\S* has shape \((32, 48|48, 32)\) in this model but '
                     r'\(\d+, \d+\) in the checkpoint'):
    train.train_and_evaluate(config, str(tmp_path / 'b'))


def test_task_and_architecture_must_agree(corpus_dir, digits_root):
  c = tiny_config(corpus_dir)
  c.model.architecture = 'encoder_decoder'
  with pytest.raises(ValueError, match="data.task='lm' needs model.architecture='decoder_only', got "
                                       "model.architecture='encoder_decoder'"):
    train.validate_config(c)
  for task in ('seq2seq', 'span_corruption'):
    c = seq2seq_config(digits_root, task)
    train.validate_config(c)
    c.model.architecture = 'decoder_only'
    with pytest.raises(ValueError, match=f"data.task='{task}' needs model.architecture='encoder_decoder'"):
      train.validate_config(c)
  c = seq2seq_config(digits_root)
  c.model.max_len = 4
  with pytest.raises(ValueError, match=r'model.max_len=4 must be 0 or >= max\(data.max_input_len, '
                                       r'data.max_target_len\) \(8\)'):
    train.validate_config(c)
  c = seq2seq_config(digits_root)
  c.data.max_target_len = 0
  with pytest.raises(ValueError, match='data.max_target_len=0 must be positive'):
    train.validate_config(c)


EXPERIMENTS = sorted(os.path.basename(p)[:-3] for p in glob.glob(os.path.join(REPO, 'experiments', '*.py'))
                     if not p.endswith(('__init__.py', 'base.py')))


@pytest.mark.parametrize('name', EXPERIMENTS)
def test_every_experiment_documents_itself_validates_and_builds(name):
  """Docstring fields, config checks on the 8 fake devices, and the train state's shapes (no memory)."""
  module = importlib.import_module(f'experiments.{name}')
  for field in ('Run:', 'Hardware:', 'Time:', 'Expect:'):
    assert field in module.__doc__, f'experiments/{name}.py: no {field!r} in its docstring'
  c = module.get_config()
  train.validate_config(c)
  vocab_size = c.data.spm_vocab_size if c.data.tokenizer == 'sentencepiece' else 256
  model = rundir.build_model(c, vocab_size)
  seq_len, input_len = tasks.row_lengths(c.data)
  state = jax.eval_shape(functools.partial(step_lib.init_state, model, optim.make_optimizer(c.train),
                                           seq_len=seq_len, input_len=input_len), jax.random.PRNGKey(0))
  assert train.flops_lib.count_params(state.params) > 0


@pytest.mark.parametrize('phase', ['validation', 'sample', 'tokenizer'])
def test_sigterm_in_a_slow_phase_stops_it_at_once_saving_the_state(corpus_dir, tmp_path, phase):
  """SIGTERM in validation (step 5, no checkpoint due before 100), the end-of-run sample or SentencePiece
  training (a child process) stops the run within seconds, saves the state if it is not saved and exits with
  the requeue status; the tokenizer's child process is gone too."""
  env = {**os.environ, 'XLA_FLAGS': FAST_COMPILE_FLAGS}  # One device.
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'tests', 'signal_worker.py'), phase, str(tmp_path),
                           str(corpus_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith(f'slow {phase}'):
      break
  else:
    pytest.fail(f'the run never reached its slow {phase}:\n' + ''.join(output))
  signalled = time.perf_counter()
  proc.send_signal(signal.SIGTERM)
  rest = proc.stdout.read()
  status, exit_s = proc.wait(timeout=60), time.perf_counter() - signalled
  output = ''.join(output) + rest
  assert status == errors.REQUEUE_EXIT_CODE, output
  assert f'received SIGTERM during {({"sample": "the sample", "tokenizer": "setup"}).get(phase, phase)}' in output
  assert exit_s < 10, f'{exit_s:.1f}s from SIGTERM to exit\n{output}'
  stopped = re.search(r'stopped (?:at step (\d+)|in setup), ([\d.]+)s after SIGTERM', output)
  assert stopped and float(stopped.group(2)) < 5, output
  checkpoints = sorted(os.listdir(tmp_path / 'checkpoints')) if phase != 'tokenizer' else []
  if phase == 'validation':  # Saved on the way out: step 5 was due no checkpoint.
    assert stopped.group(1) == '5' and checkpoints == ['5'], output
  elif phase == 'sample':  # The final checkpoint was already there.
    assert stopped.group(1) == '10' and checkpoints == ['10'], output
  else:
    child_pid = int(output.split('slow tokenizer')[1].split()[0])
    with pytest.raises(ProcessLookupError):
      os.kill(child_pid, 0)
    assert 'no step was trained' in output


def test_a_second_sigterm_exits_at_once_and_the_finished_checkpoint_restores(corpus_dir, tmp_path):
  """The first SIGTERM, in a (slow) checkpoint write, waits for the write; the second exits at once, with
  128 + SIGTERM; step 5's checkpoint, written before, restores."""
  env = {**os.environ, 'XLA_FLAGS': FAST_COMPILE_FLAGS}
  proc = subprocess.Popen([sys.executable, os.path.join(REPO, 'tests', 'signal_worker.py'), 'checkpoint',
                           str(tmp_path), str(corpus_dir)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                          env=env)
  output = []
  for line in proc.stdout:
    output.append(line)
    if line.startswith('slow checkpoint'):
      proc.send_signal(signal.SIGTERM)
    elif line.startswith('received SIGTERM: saving a checkpoint after this step'):
      break
  else:
    pytest.fail('the first SIGTERM was not acknowledged:\n' + ''.join(output))
  signalled = time.perf_counter()
  proc.send_signal(signal.SIGTERM)
  output = ''.join(output) + proc.stdout.read()
  assert proc.wait(timeout=30) == 128 + signal.SIGTERM, output
  assert time.perf_counter() - signalled < 5 and 'received a second signal (SIGTERM): exiting now' in output
  checkpointer = checkpoint_lib.Checkpointer(str(tmp_path / 'checkpoints'), keep=1, read_only=True)
  assert checkpointer.latest_step() == 5
  assert checkpointer.restore(5)['step'] == 5
  checkpointer.close()


def test_a_run_stopped_at_its_last_step_logs_its_final_validation_on_resume(corpus_dir, tmp_path, monkeypatch):
  """A signal in the last step skips the final validation; the resume logs it (a sweep reads 'done' from it)."""
  config = tiny_config(corpus_dir, num_steps=6, eval_every=100, checkpoint_every=100)
  with monkeypatch.context() as patch:
    patch.setattr(stopping, 'stop_requests', contextlib.contextmanager(lambda: (yield StopAtIteration(6))))
    with pytest.raises(errors.Stopped, match='stopped at step 6'):
      train.train_and_evaluate(config, str(tmp_path))
  assert read_metrics(tmp_path, 'validation') == []
  final = train.train_and_evaluate(config, str(tmp_path))
  logged, = read_metrics(tmp_path, 'validation')
  assert logged['step'] == 6 and logged['loss'] == final['loss']
  train.train_and_evaluate(config, str(tmp_path))  # Once logged, a rerun logs it no more.
  assert len(read_metrics(tmp_path, 'validation')) == 1
