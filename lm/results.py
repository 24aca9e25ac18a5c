"""A sweep directory's index: each run's status read from its run directory, results.csv, and the done runs as
lm/scaling.py's inputs. `./run.sh sweep` (lm/sweep.py) writes the directory; `./run.sh results`, the notebooks and
the launchers read it through here.

    <sweep_dir>/study.json      the study's runs as resolved at launch (names, overrides, cooldown parents)
    <sweep_dir>/results.csv     one row per run (RESULT_COLUMNS)
    <sweep_dir>/runs/<name>/    ordinary run directories, plus attempt.json (how the last launch ended)
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import statistics
import tempfile
from typing import Any

from lm import errors
from lm import flops
from lm import rundir
from lm import scaling
from lm import tokenizers

STUDY_FILE = 'study.json'  # In the sweep directory: the runs as resolved at launch.
RESULTS_FILE = 'results.csv'
ATTEMPT_FILE = 'attempt.json'  # In a run directory: how the sweep's last launch of it ended.
RESULT_COLUMNS = ('name', 'status', 'N', 'D', 'C', 'final_loss', 'best_loss', 'final_bits_per_byte',
                  'best_bits_per_byte', 'tokens_per_s', 'mfu', 'wall_s', 'steps', 'parent', 'error', 'overrides')


def run_dir(sweep_dir: str, name: str) -> str:
  return os.path.join(sweep_dir, 'runs', name)


def write_atomic(path: str, text: str) -> None:
  """Writes `path` through a temporary file of its own and a rename: readers see the old file or the new."""
  fd, tmp = tempfile.mkstemp(dir=os.path.dirname(path), prefix=os.path.basename(path) + '.')
  with os.fdopen(fd, 'w', newline='') as f:
    f.write(text)
  os.replace(tmp, path)


def run_status(workdir: str) -> str:
  """'done' | 'running' | 'interrupted' | 'failed' | 'not started', from the run directory alone."""
  if rundir.is_locked(workdir):
    return 'running'
  started = os.path.exists(os.path.join(workdir, rundir.CONFIG_FILE))
  if started:
    num_steps = rundir.load_config(workdir).train.num_steps
    if any(row['step'] == num_steps for row in _metrics(workdir, 'validation')):
      return 'done'
  attempt = _attempt(workdir)  # A run that fails its config check stops before writing config.json.
  if attempt and not stopped(attempt['exit_code']) and attempt['exit_code'] != 0:
    return 'failed'
  return 'interrupted' if started else 'not started'


def stopped(exit_code: int) -> bool:
  """Whether a train command's exit status means a signal stopped it (to resume), not an error: 75 (saved),
  128 + SIGINT/SIGTERM (a second signal), or killed by a signal (negative)."""
  return exit_code in (errors.REQUEUE_EXIT_CODE, 128 + signal.SIGINT, 128 + signal.SIGTERM) or exit_code < 0


def _metrics(workdir: str, split: str | None = None) -> list[dict[str, Any]]:
  try:
    return rundir.read_metrics(workdir, split)
  except FileNotFoundError:
    return []


def _attempt(workdir: str) -> dict[str, Any] | None:
  try:
    with open(os.path.join(workdir, ATTEMPT_FILE)) as f:
      return json.load(f)
  except (OSError, ValueError):
    return None


def result_row(spec: dict[str, Any], workdir: str) -> dict[str, Any]:
  """One results.csv row: the run's status and its figures so far. N: non-embedding params; D: tokens trained
  on; C: training FLOPs (lm/flops.py's accounting, as logged)."""
  status = run_status(workdir)
  row = dict.fromkeys(RESULT_COLUMNS, '')
  row.update(name=spec['name'], status=status, parent=spec['parent'], overrides=json.dumps(spec['overrides']))
  train, validation = _metrics(workdir, 'train'), _metrics(workdir, 'validation')
  try:
    if os.path.exists(os.path.join(workdir, rundir.CONFIG_FILE)):  # Its model is known from then on.
      row['N'] = non_embedding_params(workdir)
  except errors.UserError as e:  # A damaged run directory: its row says so, the others are unharmed.
    row['error'] = str(e).splitlines()[0]
    return row
  if train:
    last = train[-1]
    row.update(D=last['tokens_seen'], C=last['flops_seen'], steps=last['step'],
               tokens_per_s=statistics.median(r['tokens_per_s'] for r in train),
               mfu=statistics.median(r['mfu'] for r in train))
  if validation:
    final, best = validation[-1], min(validation, key=lambda r: r['loss'])
    row.update(final_loss=final['loss'], best_loss=best['loss'], final_bits_per_byte=final['bits_per_byte'],
               best_bits_per_byte=best['bits_per_byte'])
  row['wall_s'] = _wall_seconds(workdir) or ''
  if status == 'failed':
    row['error'] = _attempt(workdir)['error']
  return row


def non_embedding_params(workdir: str) -> int:
  """Kaplan's N of the run's model (lm/flops.py), from its config.json and tokenizer: the scaling fits' x."""
  vocab_size = tokenizers.load_tokenizer(os.path.join(workdir, rundir.TOKENIZER_DIR)).vocab_size
  return flops.param_counts(rundir.build_model(rundir.load_config(workdir), vocab_size).config).non_embedding


def _wall_seconds(workdir: str) -> float:
  """Wall time of all the run's attempts: each attempt's last logged wall_s, summed."""
  total, last = 0.0, 0.0
  for row in _metrics(workdir):
    if row['split'] == 'resume':
      total, last = total + last, 0.0
    elif 'wall_s' in row:
      last = row['wall_s']
  return total + last


def read_index(sweep_dir: str) -> dict[str, Any]:
  path = os.path.join(sweep_dir, STUDY_FILE)
  if not os.path.exists(path):
    raise errors.MissingError(f'{path} not found: is {sweep_dir!r} a sweep directory made by `./run.sh sweep`?')
  with open(path) as f:
    return json.load(f)


def write_results(sweep_dir: str) -> list[dict[str, Any]]:
  """Writes results.csv (one row per run, RESULT_COLUMNS) atomically and returns its rows."""
  rows = [result_row(spec, run_dir(sweep_dir, spec['name'])) for spec in read_index(sweep_dir)['runs']]
  text = io.StringIO()
  writer = csv.DictWriter(text, RESULT_COLUMNS)
  writer.writeheader()
  writer.writerows(rows)
  write_atomic(os.path.join(sweep_dir, RESULTS_FILE), text.getvalue())
  return rows


def read_results(sweep_dir: str) -> list[dict[str, Any]]:
  """results.csv's rows with numbers as numbers ('' stays '')."""
  with open(os.path.join(sweep_dir, RESULTS_FILE), newline='') as f:
    return [{key: _number(value) if key not in ('name', 'status', 'parent', 'error', 'overrides') else value
             for key, value in row.items()} for row in csv.DictReader(f)]


def _number(text: str) -> float | int | str:
  if text == '':
    return ''
  value = float(text)
  return int(value) if value.is_integer() and 'e' not in text and '.' not in text else value


def format_results(rows: list[dict[str, Any]]) -> str:
  """results.csv as an aligned table (the overrides left out: the name spells them)."""
  columns = [c for c in RESULT_COLUMNS if c not in ('overrides',)]

  def cell(value):
    if isinstance(value, float):
      return f'{value:.4g}' if math.isfinite(value) else str(value)
    return str(value)
  table = [columns] + [[cell(row[c]) for c in columns] for row in rows]
  widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
  return '\n'.join('  '.join(v.ljust(w) for v, w in zip(line, widths)).rstrip() for line in table)


# ----------------------------------------------------------------------------------------------------------
# For the fits.


def load_runs(sweep_dir: str) -> list[scaling.Run]:
  """The sweep's done runs as lm/scaling.py's Runs (N, D, C, final loss) with a curve each for Approaches 1-2.

  A cooldown branch's curve is its size's cooled-down points: the finals of its parent's branches up to its own
  D (each a run trained to that length, as Hägele et al. read them). A run of its own has its logged validation
  curve, its C read at each evaluation from its tokens (C/D is constant along a run). Cooldown parents, whose
  curves never decay, are left out."""
  index, rows = read_index(sweep_dir), {row['name']: row for row in write_results(sweep_dir)}
  specs = [spec for spec in index['runs'] if rows[spec['name']]['status'] == 'done']
  parents = {spec['parent'] for spec in index['runs'] if spec['parent']}  # Never cooled down: not fitted.
  finals = {}
  for spec in specs:
    if spec['name'] in parents:
      continue
    row = rows[spec['name']]
    finals.setdefault(spec['parent'] or spec['name'], []).append((row['D'], row['C'], row['final_loss']))
  runs = []
  for spec in specs:
    if spec['name'] in parents:
      continue
    row = rows[spec['name']]
    if spec['parent']:
      curve = sorted(point for point in finals[spec['parent']] if point[0] <= row['D'])
    else:
      per_token = row['C'] / row['D']
      curve = [(r['tokens_seen'], r['tokens_seen'] * per_token, r['loss'])
               for r in _metrics(run_dir(sweep_dir, spec['name']), 'validation') if r['tokens_seen'] > 0]
    tokens, flops, loss = (list(values) for values in zip(*curve))
    runs.append(scaling.Run(row['N'], row['D'], row['C'], row['final_loss'], tokens, flops, loss))
  return runs
