"""A run directory (`--workdir`): its files, and the run read back from them.

    config.json      the resolved config (`write_config`; `load_config` reads older versions' keys too)
    lock             flock'ed by the one trainer; its JSON names it (host, pid, since) (`WorkdirLock`)
    metrics.jsonl    one JSON object per log event, append-only, mirrored to tensorboard/ (`MetricsLog`);
                     `read_metrics` reads it without the rows a resumed run redid
    checkpoints/     orbax steps: train state + data iterator (`lm/checkpoint.py`)
    tokenizer/       the tokenizer the run used
    samples.txt      the samples printed at the end of training (`append_sample`)
    imported.json    only in a run imported from Hugging Face (lm/hf.py): where from; params only, step 0

A trainer holds the lock for its whole run; readers (`load_run`, `read_metrics`) take none.
`load_run` gives (config, tokenizer, model, params, step) of the latest checkpoint; `pretrained_params` and
`copy_tokenizer` start a fine-tuning run from another run (config.init_from). Also a config file for
ml_collections: `--config=lm/rundir.py:WORKDIR` is the run's own config, so `--config.KEY=VALUE` overrides it.
One concept past ~450 lines: each file above is written and read back here, by the trainer and by every reader.
"""
from __future__ import annotations

import contextlib
import datetime
import errno
import fcntl
import json
import os
import socket
import sys
import typing
from typing import Any

import flax.linen as nn
import jax
import ml_collections
import numpy as np

from lm import checkpoint as checkpoint_lib
from lm import config as config_lib
from lm import errors
from lm import model as model_lib
from lm import tokenizers
from lm.data import tasks
from lm.data import tokenizer_cache

CONFIG_FILE = 'config.json'
LOCK_FILE = 'lock'
METRICS_FILE = 'metrics.jsonl'
SAMPLES_FILE = 'samples.txt'
TOKENIZER_DIR = tokenizer_cache.RUN_SUBDIR
CHECKPOINT_DIR = 'checkpoints'
# Marks a run directory written by `./run.sh import` (lm/hf.py): its checkpoint holds params only, to read or to
# fine-tune from (config.init_from), not to resume training in.
IMPORTED_FILE = 'imported.json'


def resolve(workdir: str) -> str:
  return os.path.abspath(os.path.expanduser(workdir))


def check_trainable(workdir: str) -> None:
  """Raises if `workdir` is an imported checkpoint: it has no optimizer or data state to resume."""
  if os.path.exists(os.path.join(workdir, IMPORTED_FILE)):
    raise errors.InputError(f'{workdir} holds a checkpoint imported from Hugging Face, which is read, not trained '
                            f'in: fine-tune it into a new run, its config as the base: --config=lm/rundir.py:{workdir} '
                            f'--config.init_from={workdir} --workdir=runs/NEW')


def write_config(workdir: str, config: ml_collections.ConfigDict) -> None:
  with open(os.path.join(workdir, CONFIG_FILE), 'w') as f:
    f.write(config.to_json_best_effort(indent=2))


def _tuples(value):
  """JSON has no tuples: configs hold tuples (mesh_shape, eval.metrics), so lists become tuples again."""
  if isinstance(value, dict):
    return {key: _tuples(item) for key, item in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(item) for item in value)
  return value


def load_config(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config that `./run.sh train` saved in `workdir`, in today's keys (`config.upgrade`)."""
  path = os.path.join(os.path.expanduser(workdir), CONFIG_FILE)
  if not os.path.exists(path):
    raise errors.MissingError(f'{path} not found: is {workdir!r} a run directory made by `./run.sh train`?')
  try:
    with open(path, encoding='utf-8') as f:
      saved = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    where = f'line {e.lineno} column {e.colno}: {e.msg}' if isinstance(e, json.JSONDecodeError) else e.reason
    raise errors.InputError(f'{path} is corrupt ({where}). It is the config the run was trained with: restore it '
                            'from a copy, or train in a new --workdir.') from None
  if not isinstance(saved, dict):
    raise errors.InputError(f'{path} is corrupt: it holds a JSON {type(saved).__name__}, not an object.')
  return ml_collections.ConfigDict(config_lib.upgrade(_tuples(saved)))


def get_config(workdir: str) -> ml_collections.ConfigDict:
  """The config-file entry point (ml_collections passes what follows the ':' of --config=FILE:ARG)."""
  return load_config(workdir)


def _this_process() -> dict[str, Any]:
  return {'host': socket.gethostname(), 'pid': os.getpid()}


def _now() -> str:
  return datetime.datetime.now().astimezone().isoformat(timespec='seconds')


def _warn(message: str) -> None:
  print(f'warning: {message}', file=sys.stderr, flush=True)


# flock errors that mean the filesystem cannot lock (NFS without lockd, Lustre mounted without -o flock).
_NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP, errno.ENOTSUP)


class WorkdirLock:
  """One trainer per run directory: an exclusive, non-blocking flock on workdir/lock, whose JSON names the
  holder (host, pid, since). Held from `train.setup` until `Run.close`; `release` (or leaving a `with` block)
  empties the file and unlocks.

  The kernel drops a flock when its process dies, so a file that still names another process once the flock is
  ours was left by a run that crashed: it is taken over, with a warning. A held lock raises `errors.WorkdirBusy`.
  """

  def __init__(self, workdir: str):
    self.workdir = workdir
    self._file = open(os.path.join(workdir, LOCK_FILE), 'a+')  # Created if missing, never truncated unlocked.
    self.locked = False
    try:
      fcntl.flock(self._file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
      owner = _owner(self._file)
      self._file.close()
      raise busy_error(workdir, owner) from None
    except OSError as e:
      if e.errno not in _NO_LOCKS:
        self._file.close()
        raise
      _warn(f'the filesystem of {workdir} cannot lock files ({e.strerror}): training without a lock, so make '
            'sure no other process trains in it')
      return
    self.locked = True
    previous = _owner(self._file)
    if previous and {key: previous[key] for key in ('host', 'pid')} != _this_process():
      _warn(f'taking over the lock of {workdir} from pid {previous["pid"]} on host {previous["host"]}, which is '
            'gone')
    self._file.truncate(0)  # 'a+' writes at the end, which is now the start.
    self._file.write(json.dumps({**_this_process(), 'since': _now()}) + '\n')
    self._file.flush()

  def release(self) -> None:
    if self._file.closed:
      return
    if self.locked:
      self._file.truncate(0)  # A run that ends cleanly names no holder: only a crashed one leaves its name.
      self._file.flush()
      fcntl.flock(self._file, fcntl.LOCK_UN)  # Not just close: forked children share the lock until they exit.
    self._file.close()

  def __enter__(self) -> WorkdirLock:
    return self

  def __exit__(self, *exc_info) -> None:
    self.release()


def is_locked(workdir: str) -> bool:
  """Whether a process holds `workdir`'s lock now (a training run in it), without taking or writing it."""
  try:
    with open(os.path.join(workdir, LOCK_FILE)) as f:
      try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
      except BlockingIOError:
        return True
      fcntl.flock(f, fcntl.LOCK_UN)
      return False
  except OSError:  # No lock file (never trained), or a file system without locks.
    return False


def _owner(file: typing.TextIO) -> dict[str, Any] | None:
  """The holder a lock file names, or None if it is empty or unreadable (a holder that has not written yet)."""
  file.seek(0)
  try:
    owner = json.loads(file.read())
  except ValueError:
    return None
  return owner if isinstance(owner, dict) and {'host', 'pid', 'since'} <= owner.keys() else None


def busy_error(workdir: str, owner: dict[str, Any] | None = None) -> errors.WorkdirBusy:
  """The error of a trainer refused `workdir`: who holds it (`owner`, else as its lock file says) and what to do."""
  if owner is None:
    try:
      with open(os.path.join(workdir, LOCK_FILE)) as f:
        owner = _owner(f)
    except OSError:
      pass
  who = f'pid {owner["pid"]} on host {owner["host"]} since {owner["since"]}' if owner else 'another process'
  return errors.WorkdirBusy(f'{workdir} is being trained by {who}: wait for that run to finish (or stop it), or '
                            'train in another --workdir.')


RESUME_SPLIT = 'resume'


class MetricsLog:
  """Appends one JSON object per event to metrics.jsonl and mirrors scalars to TensorBoard.

  The file is only ever appended to. A restart (the file exists) first appends a 'resume' row at `start_step`,
  the restored step: the rows logged before it at later steps are redone, and `read_metrics` drops them.
  """

  def __init__(self, workdir: str, start_step: int):
    summary_writer = _import_summary_writer()  # Only runs that log pay for the import.
    path = os.path.join(workdir, METRICS_FILE)
    restart = os.path.exists(path)
    self._jsonl = open(path, 'a')
    if restart:
      if not _ends_a_line(path):  # A crash cut its last row short: the resume row must start a line of its own.
        self._jsonl.write('\n')
      self._append({'step': start_step, 'split': RESUME_SPLIT, **_this_process(), 'time': _now()})
    self._tensorboard = summary_writer(os.path.join(workdir, 'tensorboard'), purge_step=start_step + 1)

  def _append(self, row: dict[str, Any]) -> None:
    try:
      self._jsonl.write(json.dumps(row) + '\n')
      self._jsonl.flush()
    except OSError as e:
      if e.errno not in checkpoint_lib.OUT_OF_SPACE:
        raise
      with contextlib.suppress(OSError):
        self._jsonl.close()  # Its buffer holds the failed row: a later close would raise again.
      raise _metrics_disk_full(self._jsonl.name, f'the {row["split"]} row of step {row["step"]}', e) from e

  def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
    self._append({'step': step, 'split': split, **metrics})
    for key, value in metrics.items():
      if isinstance(value, (int, float)):  # Not the words of a row (e.g. 'hardware''s dtype).
        self._tensorboard.add_scalar(f'{split}/{key}', value, step)
    self._tensorboard.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tensorboard.close()


def _import_summary_writer():
  """tensorboardX's SummaryWriter without PyTorch: where torch is installed (the hf and bench extras) tensorboardX
  imports it only to accept torch tensors, which took every run 1.5 s longer to start (0.08 s without, on the
  2-core Intel Xeon VM). A None in sys.modules makes that import fail as if torch were absent."""
  if 'torch' not in sys.modules:
    sys.modules['torch'] = None
  try:
    from tensorboardX import SummaryWriter  # noqa: PLC0415
  finally:
    if sys.modules.get('torch', 0) is None:
      del sys.modules['torch']
  return SummaryWriter


def _ends_a_line(path: str) -> bool:
  with open(path, 'rb') as f:
    if f.seek(0, os.SEEK_END) == 0:
      return True
    f.seek(-1, os.SEEK_END)
    return f.read(1) == b'\n'


def _metrics_disk_full(path: str, what: str, e: OSError) -> errors.DiskFullError:
  """The error of a metrics row that found no space: the rows before it are on disk, the checkpoints untouched."""
  checkpoints = os.path.join(os.path.dirname(path), CHECKPOINT_DIR)
  error = errors.DiskFullError(
      f'no space left on the disk of {path}: writing {what} failed ({e.strerror}). The rows written before it are '
      f'kept (the last may be cut short), and the checkpoints in {checkpoints} are untouched (the newest complete: '
      f'{_newest_step(os.path.dirname(path))}); free space, then rerun the same command to resume.')
  error.errno = e.errno  # For callers that test it; the message stays the text above.
  return error


def _newest_step(workdir: str) -> str:
  """'step N' of `workdir`'s newest complete checkpoint, or 'none'. (A save in progress completes before the
  run exits: the rerun may resume from a later one.)"""
  checkpointer = _read_only_checkpoints(workdir)
  if checkpointer is None:
    return 'none'
  try:
    return f'step {checkpointer.latest_step()}'
  finally:
    checkpointer.close()


def read_metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
  """metrics.jsonl's rows (of `split`, if given), in order, without the superseded ones: those logged before a
  'resume' row at a later step than its step, which the resumed run redid. `split` None includes the 'resume'
  rows. A row a crash cut short (the last line, or the one before a resume row) is skipped.

  E.g. rows of steps 1 2 3 4, resume at 2, rows 3 4 5 read as 1 2 resume(2) 3 4 5, steps 3 and 4 the redone ones.
  """
  path = os.path.join(workdir, METRICS_FILE)
  with open(path, errors='replace') as f:  # A garbled line may hold any bytes.
    lines = [line for line in f if line.strip()]
  rows = []
  for number, line in enumerate(lines):
    row = _row(line)
    if row is None:
      following = _row(lines[number + 1]) if number + 1 < len(lines) else None
      if number + 1 == len(lines) or (following and following['split'] == RESUME_SPLIT):
        continue
      raise errors.InputError(f'{path} line {number + 1} is no metrics row: {line[:100]!r}. Only a crash cuts a '
                              'row short, and the next start then appends a resume row; was the file edited?')
    if row['split'] == RESUME_SPLIT:
      rows = [kept for kept in rows if kept['step'] <= row['step']]
    rows.append(row)
  return [row for row in rows if split is None or row['split'] == split]


def _row(line: str) -> dict[str, Any] | None:
  try:
    row = json.loads(line)
  except ValueError:
    return None
  return row if isinstance(row, dict) and {'step', 'split'} <= row.keys() else None


class NullLog:
  """What processes other than 0 log: nothing."""

  def write(self, *args, **kwargs) -> None:
    pass

  def close(self) -> None:
    pass


def append_sample(workdir: str, heading: str, text: str) -> None:
  with open(os.path.join(workdir, SAMPLES_FILE), 'a') as f:
    f.write(f'{heading}\n{text}\n')


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> model_lib.DecoderLM | model_lib.EncoderDecoder:
  """The model of `config` for a tokenizer of `vocab_size` ids; model.max_len 0 becomes the longest row."""
  return model_lib.build_model(model_lib.ModelConfig.from_config(
      config.model, vocab_size=vocab_size, max_len=max(tasks.row_lengths(config.data))))


class Run(typing.NamedTuple):
  """A run directory's latest checkpoint, ready to generate or evaluate."""
  config: ml_collections.ConfigDict
  tokenizer: Any
  model: Any
  params: Any
  step: int


def _read_only_checkpoints(workdir: str) -> checkpoint_lib.Checkpointer | None:
  """A checkpointer that can never write or delete, over `workdir`'s checkpoints; None if there is none."""
  directory = os.path.join(workdir, CHECKPOINT_DIR)
  if os.path.isdir(directory):
    checkpointer = checkpoint_lib.Checkpointer(directory, keep=1, read_only=True)
    if checkpointer.latest_step() is not None:
      return checkpointer
    checkpointer.close()
  return None


def _latest_params(checkpointer: checkpoint_lib.Checkpointer) -> tuple[Any, int]:
  """(params as saved, step) of the latest checkpoint. Read as saved (float32, host arrays): the optimizer's
  state is read and dropped, so any strategy and any optimizer config can load them."""
  try:
    step = checkpointer.latest_step()
    return checkpointer.restore(step)['params'], step
  finally:
    checkpointer.close()


def load_run(workdir: str, config: ml_collections.ConfigDict | None = None) -> Run:
  """The latest checkpoint of a run directory, with its tokenizer and model.

  `config` None reads the run's own config.json (with the keys added since the run was made, at their
  defaults); a given one must describe the same model.
  """
  workdir = resolve(workdir)
  saved = load_config(workdir)  # Raises first if `workdir` is no run directory.
  config = saved if config is None else config
  checkpointer = _read_only_checkpoints(workdir)
  if checkpointer is None:
    raise errors.MissingError(f'no checkpoint in {os.path.join(workdir, CHECKPOINT_DIR)}: train first '
                            f'(./run.sh train --workdir={workdir})')
  tokenizer = tokenizer_cache.get_tokenizer(config.data, workdir)  # The run's own, checked against config.data.
  model = build_model(config, tokenizer.vocab_size)
  params, step = _latest_params(checkpointer)
  fresh = jax.eval_shape(lambda: model.init_variables(jax.random.PRNGKey(0), **_lengths(config)))
  check_same_params(nn.meta.unbox(fresh['params']), params, f'{workdir} step {step}')
  return Run(config, tokenizer, model, params, step)


def _lengths(config: ml_collections.ConfigDict) -> dict[str, int]:
  target_len, input_len = tasks.row_lengths(config.data)
  return {'target_len': target_len, 'input_len': input_len}


def _pretrained_checkpoints(run_dir: str) -> checkpoint_lib.Checkpointer:
  checkpointer = _read_only_checkpoints(run_dir)
  if checkpointer is None:
    raise errors.MissingError(f'init_from={run_dir!r} has no checkpoint in {os.path.join(run_dir, CHECKPOINT_DIR)}: '
                            'train that run first, or set init_from to a run directory that has one.')
  return checkpointer


def pretrained_step(run_dir: str) -> int:
  """The latest step of `run_dir` (config.init_from); raises if it has no checkpoint."""
  checkpointer = _pretrained_checkpoints(run_dir)
  try:
    return checkpointer.latest_step()
  finally:
    checkpointer.close()


def pretrained_params(run_dir: str) -> tuple[Any, int]:
  """(params, step) of `run_dir`'s latest checkpoint, for config.init_from; raises if there is none."""
  return _latest_params(_pretrained_checkpoints(run_dir))


def copy_tokenizer(run_dir: str, workdir: str, data_config: ml_collections.ConfigDict) -> None:
  """Gives this run `run_dir`'s tokenizer (unless it has one): pretrained embeddings index its ids."""
  source, target = (os.path.join(d, TOKENIZER_DIR) for d in (run_dir, workdir))
  if not os.path.isdir(source):
    raise errors.MissingError(f'init_from={run_dir!r} has no tokenizer in {source}: is it a run directory?')
  tokenizer, data = tokenizers.load_tokenizer(source), data_config
  kind = tokenizer.to_dict()['kind']
  wanted = {'tokenizer': kind}
  if kind == 'sentencepiece':
    wanted.update(spm_model_type=tokenizer.model_type, spm_vocab_size=tokenizer.vocab_size)
  if any(data[key] != value for key, value in wanted.items()):
    raise errors.InputError(f'init_from={run_dir!r} trained with its own tokenizer, which this run must use (its '
                     f'embeddings index its ids): set ' + ' '.join(f'data.{k}={v!r}' for k, v in wanted.items())
                     + ' (this config has ' + ' '.join(f'data.{k}={data[k]!r}' for k in wanted) + ').')
  if not os.path.isdir(target):
    tokenizer.save(target)


def check_same_params(want: Any, got: Any, source: str) -> None:
  """Raises naming the first parameter whose presence or shape differs between `want` and `got`."""
  def shapes(tree):
    return {'/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

  want, got = shapes(want), shapes(got)
  for name in sorted(want.keys() | got.keys()):
    if want.get(name) != got.get(name):
      raise errors.InputError(
          f'{source}: parameter {name} has shape {want.get(name, "(missing)")} in this model but '
          f'{got.get(name, "(missing)")} in the checkpoint; use the config.model the checkpoint was trained with.')
