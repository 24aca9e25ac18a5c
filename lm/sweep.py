"""Sweeps: a study file's runs, launched here, on SLURM or by any scheduler, and indexed in results.csv.

A study file (experiments/studies/<name>.py) has `get_study()`, which returns plain data:

    experiment  the base experiment file, relative to the repository ('experiments/shakespeare.py')
    fixed       {key: value} overrides every run gets (studies pin model.dtype, so their runs compare;
                train.time_budget_s is always 0: a run's D must not depend on the machine)
    grid        {key: [values]}: one run per combination, in order (size x tokens x learning rate x seed)
    runs        [{key: value}]: more runs, each with `fixed` (optional)
    cooldowns   optional WSD branching (Hägele et al. 2024): {'steps': [T1, T2, ...], 'fraction': f}. Each grid
                point becomes one parent run at a constant learning rate after warmup, saving its state at every
                T*(1-f); each branch restores the parent's full train state and data position there and decays
                the learning rate linearly over the last f*T steps: a run of T steps (its D) for the price of
                its cooldown. train.num_steps comes from `steps`.
    resources   SLURM: {'gpus_per_run': 0, 'cpus_per_run': 2, 'time_limit': '1:00:00', 'partition': ''}

Each run is an ordinary run directory, `<sweep_dir>/runs/<name>/`, trained by the ordinary train command
(`python -m lm.main train --config=EXPERIMENT --workdir=... --config.KEY=VALUE ...`), so it resumes, locks and
logs like any run. Its status is read from the directory itself (lm/results.py's `run_status`): done (a final
validation at train.num_steps), running (its lock is held), interrupted (started, neither done nor failed:
stopped by a signal or killed; the next launch resumes it), failed (its last attempt exited with an error:
`attempt.json` keeps the last error line), or not started. `results.csv` indexes every run (lm/results.py).
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import itertools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import time
from typing import Any

from lm import config as config_lib
from lm import errors
from lm import results
from lm import rundir

REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LOG_FILE = 'train.log'  # In a run directory: the train command's output, every attempt appended.
STUDY_KEYS = ('experiment', 'fixed', 'grid', 'runs', 'cooldowns', 'resources')
RESOURCE_DEFAULTS = {'gpus_per_run': 0, 'cpus_per_run': 2, 'time_limit': '1:00:00', 'partition': ''}


@dataclasses.dataclass(frozen=True)
class RunSpec:
  """One run of a study: its name (its directory under runs/), its overrides, and for a cooldown branch the
  parent run and step it forks from."""
  name: str
  overrides: dict[str, Any]
  parent: str = ''
  fork_step: int = 0


# ----------------------------------------------------------------------------------------------------------
# Study files.


def load_study(path: str) -> dict[str, Any]:
  """The study file's `get_study()`, checked: known keys, declared config keys, a base experiment that exists."""
  if not os.path.isfile(path):
    raise errors.MissingError(f'no study file {path!r}; studies are in {REPOSITORY}/experiments/studies')
  spec = importlib.util.spec_from_file_location('study', path)
  module = importlib.util.module_from_spec(spec)
  spec.loader.exec_module(module)
  study = dict(module.get_study())
  unknown = set(study) - set(STUDY_KEYS)
  if unknown:
    raise errors.InputError(f'{path}: unknown study keys {sorted(unknown)}; a study has {list(STUDY_KEYS)}')
  study.setdefault('fixed', {})
  study.setdefault('grid', {})
  study.setdefault('runs', [])
  study['resources'] = {**RESOURCE_DEFAULTS, **study.get('resources', {})}
  if not os.path.isfile(os.path.join(REPOSITORY, study.get('experiment', ''))):
    raise errors.InputError(f"{path}: 'experiment' must name an experiment file of the repository, got "
                            f"{study.get('experiment')!r}")
  for key in [*study['fixed'], *study['grid'], *(k for run in study['runs'] for k in run)]:
    config_lib.check_key(key)
  if not study['grid'] and not study['runs'] or any(not values for values in study['grid'].values()):
    raise errors.InputError(f'{path}: the study has no runs: give a grid (no empty value list) or runs')
  unknown = set(study['resources']) - set(RESOURCE_DEFAULTS)
  if unknown:
    raise errors.InputError(f'{path}: unknown resources {sorted(unknown)}; they are {list(RESOURCE_DEFAULTS)}')
  if 'cooldowns' in study and set(study['cooldowns']) != {'steps', 'fraction'}:
    raise errors.InputError(f"{path}: cooldowns needs exactly 'steps' and 'fraction', got {study['cooldowns']}")
  return study


def expand(study: dict[str, Any]) -> list[RunSpec]:
  """The study's runs, in launch order (a cooldown parent before its branches)."""
  grid = study['grid']
  points = [dict(zip(grid, values)) for values in itertools.product(*grid.values())] if grid else []
  points += [dict(run) for run in study['runs']]
  cooldowns = study.get('cooldowns')
  specs = []
  for point in points:
    # Fixed step counts: a time budget would make D depend on the machine (and move cooldown fork points).
    overrides = {**study['fixed'], **point, 'train.time_budget_s': 0}
    if not cooldowns:
      specs.append(RunSpec(run_name(point), overrides))
    else:
      specs += _cooldown_runs(point, overrides, cooldowns)
  names = [spec.name for spec in specs]
  duplicates = sorted({name for name in names if names.count(name) > 1})
  if duplicates:
    raise errors.InputError(f'the study names two runs alike: {duplicates}; give their points distinct values')
  return specs


def _cooldown_runs(point: dict[str, Any], overrides: dict[str, Any], cooldowns: dict[str, Any]) -> list[RunSpec]:
  """A parent at a constant learning rate saving its state at each branch point, then one WSD branch per
  length in cooldowns['steps'], which decays over its last cooldowns['fraction'] of steps."""
  fraction, lengths = cooldowns['fraction'], sorted(cooldowns['steps'])
  if not 0 < fraction < 1 or not lengths:
    raise errors.InputError(f"cooldowns: 'fraction' must be in (0, 1) and 'steps' non-empty, got {cooldowns}")
  forks = {length: int(round(length * (1 - fraction))) for length in lengths}
  parent = run_name({**point, 'stable': max(forks.values())})
  specs = [RunSpec(parent, {**overrides, 'train.schedule': 'constant', 'train.num_steps': max(forks.values()),
                            'train.save_steps': tuple(sorted(set(forks.values())))})]
  for length, fork in forks.items():
    decay = length - fork
    specs.append(RunSpec(run_name({**point, 'steps': length}),
                         {**overrides, 'train.schedule': 'wsd', 'train.num_steps': length,
                          'train.decay_fraction': decay / length}, parent=parent, fork_step=fork))
  return specs


def run_name(point: dict[str, Any]) -> str:
  """'size-1m_learning_rate-0.003_seed-0': each key's last part and its value, file-name safe."""
  parts = [f'{key.rsplit(".", 1)[-1]}-{_short(value)}' for key, value in point.items()]
  return re.sub(r'[^A-Za-z0-9._-]+', '-', '_'.join(parts)) or 'run'  # Safe in paths and shell arrays.


def _short(value: Any) -> str:
  return f'{value:g}' if isinstance(value, float) else str(value)


def command_line(spec: RunSpec, experiment: str, sweep_dir: str) -> list[str]:
  """The ordinary train command of one run (python -m lm.main train ...)."""
  flags = [f'--config.{key}={_flag_value(value)}' for key, value in spec.overrides.items()]
  return [sys.executable, '-m', 'lm.main', 'train', f'--config={os.path.join(REPOSITORY, experiment)}',
          f'--workdir={results.run_dir(sweep_dir, spec.name)}', *flags]


def _flag_value(value: Any) -> str:
  if isinstance(value, tuple):
    return '(' + ','.join(map(_flag_value, value)) + (',)' if len(value) == 1 else ')')
  return repr(value) if isinstance(value, float) else str(value)


# ----------------------------------------------------------------------------------------------------------
# Launching.


def prepare(study_path: str, sweep_dir: str) -> tuple[dict[str, Any], list[RunSpec]]:
  """Loads the study and records its runs in sweep_dir/study.json (the index `results` reads)."""
  study = load_study(study_path)
  specs = expand(study)
  os.makedirs(sweep_dir, exist_ok=True)
  index = {'study': os.path.abspath(study_path), 'experiment': study['experiment'],
           'resources': study['resources'], 'runs': [dataclasses.asdict(spec) for spec in specs]}
  text = json.dumps(index, indent=1, default=list)
  path = os.path.join(sweep_dir, results.STUDY_FILE)
  if not os.path.exists(path) or open(path).read() != text:  # SLURM tasks read it while others prepare.
    results.write_atomic(path, text)
  return study, specs


def launch_local(study_path: str, sweep_dir: str, *, only: str = '') -> int:
  """Runs the study's unfinished runs in turn here: done ones are skipped, interrupted ones resume, a failed one is
  recorded and the next goes on. Returns how many failed. A signal that stops a run stops the sweep too."""
  study, specs = prepare(study_path, sweep_dir)
  failures = 0
  for spec in specs:
    if only and spec.name != only:
      continue
    status = results.run_status(results.run_dir(sweep_dir, spec.name))
    if status in ('done', 'running'):
      print(f'{spec.name}: {status}, skipped', flush=True)
      continue
    print(f'{spec.name}: {"resuming" if status == "interrupted" else "starting"}', flush=True)
    exit_code = run_one(spec, study['experiment'], sweep_dir)
    results.write_results(sweep_dir)
    if results.stopped(exit_code):
      raise errors.Stopped(f'the sweep stopped with {spec.name} (exit status {exit_code}); rerun the same command '
                           'to go on')
    failures += exit_code != 0
  results.write_results(sweep_dir)
  return failures


def run_one(spec: RunSpec, experiment: str, sweep_dir: str) -> int:
  """Trains one run to its end (forking a branch from its parent first), its output appended to train.log;
  records how it ended in attempt.json. Returns the train command's exit status (1 if the fork failed).

  The child runs in a session of its own, and a SIGTERM or SIGINT to this process (SLURM's time-limit signal
  reaches the batch step's process, Ctrl-C the terminal's foreground group) is passed on to it once: it saves
  and exits 75, and so does the sweep."""
  workdir = results.run_dir(sweep_dir, spec.name)
  os.makedirs(workdir, exist_ok=True)
  command = command_line(spec, experiment, sweep_dir)
  with open(os.path.join(workdir, LOG_FILE), 'a') as log:
    log.write(f'--- {time.strftime("%Y-%m-%d %H:%M:%S")} {" ".join(command)}\n')
    log.flush()
    try:
      if spec.parent:
        fork_branch(results.run_dir(sweep_dir, spec.parent), spec.fork_step, workdir)
    except errors.UserError as e:  # E.g. its parent failed: this run fails, the others go on.
      log.write(f'error: {e}\n')
      exit_code = 1
    else:
      child = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=REPOSITORY, start_new_session=True)
      with _passed_on_to(child):
        exit_code = child.wait()
  error = _last_error_line(os.path.join(workdir, LOG_FILE)) if exit_code else ''
  with open(os.path.join(workdir, results.ATTEMPT_FILE), 'w') as f:
    json.dump({'exit_code': exit_code, 'error': error, 'time': time.strftime('%Y-%m-%dT%H:%M:%S')}, f)
  print(f'{spec.name}: exit status {exit_code}{": " + error if error else ""}', flush=True)
  return exit_code


@contextlib.contextmanager
def _passed_on_to(child: subprocess.Popen):
  """SIGTERM and SIGINT to this process go to `child` instead (in the main thread; elsewhere nothing changes)."""
  previous = {}
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, lambda signum, frame: child.send_signal(signum))
  except ValueError:  # Not the main thread.
    pass
  try:
    yield
  finally:
    for sig, handler in previous.items():
      signal.signal(sig, handler)


def _last_error_line(log_path: str) -> str:
  """The last 'error: ' line of a run's log, else its last non-empty line (a bug's exception)."""
  with open(log_path, errors='replace') as f:
    lines = [line.strip() for line in f if line.strip()]
  starts = [i for i, line in enumerate(lines) if line.startswith('--- ')]
  lines = lines[starts[-1] + 1:] if starts else lines  # The last attempt's.
  return next((line for line in reversed(lines) if line.startswith('error: ')), lines[-1] if lines else '')


def fork_branch(parent_dir: str, step: int, branch_dir: str) -> None:
  """Gives a cooldown branch its parent's state at `step` (the checkpoint, hard-linked: orbax never rewrites a
  step) with its tokenizer and its metrics up to `step`, so that the branch's train command resumes there. Once
  the branch has a checkpoint of its own this does nothing."""
  checkpoints = os.path.join(branch_dir, rundir.CHECKPOINT_DIR)
  if os.path.isdir(checkpoints) and os.listdir(checkpoints):
    return
  source = os.path.join(parent_dir, rundir.CHECKPOINT_DIR, str(step))
  if not os.path.isdir(source):
    raise errors.MissingError(f'cooldown branch {branch_dir}: its parent {parent_dir} has no checkpoint at step '
                              f'{step}; train the parent first')
  os.makedirs(checkpoints, exist_ok=True)
  try:
    shutil.copytree(source, os.path.join(checkpoints, str(step)), copy_function=os.link)
  except OSError:  # Another file system: copy.
    shutil.rmtree(os.path.join(checkpoints, str(step)), ignore_errors=True)
    shutil.copytree(source, os.path.join(checkpoints, str(step)))
  tokenizer = os.path.join(parent_dir, rundir.TOKENIZER_DIR)
  if os.path.isdir(tokenizer) and not os.path.isdir(os.path.join(branch_dir, rundir.TOKENIZER_DIR)):
    shutil.copytree(tokenizer, os.path.join(branch_dir, rundir.TOKENIZER_DIR))
  rows = [row for row in rundir.read_metrics(parent_dir) if row['step'] <= step and row['split'] != 'resume']
  with open(os.path.join(branch_dir, rundir.METRICS_FILE), 'w') as f:
    f.writelines(json.dumps(row) + '\n' for row in rows)


def slurm_script(study: dict[str, Any], specs: list[RunSpec], sweep_dir: str, indices: list[int], *,
                 dependency: str = '') -> str:
  """A SLURM job array over `indices` of `specs`: each task trains its run through the local launcher (so a
  resubmitted or requeued task resumes it)."""
  r = study['resources']
  logs = os.path.join(sweep_dir, 'slurm')
  lines = ['#!/bin/bash', f'#SBATCH --job-name=lm-{os.path.basename(sweep_dir)}',
           f'#SBATCH --array={",".join(map(str, indices))}', f'#SBATCH --cpus-per-task={r["cpus_per_run"]}',
           f'#SBATCH --time={r["time_limit"]}', f'#SBATCH --output={logs}/%A_%a.out', '#SBATCH --open-mode=append',
           '#SBATCH --signal=B:TERM@60']  # A minute before the time limit: the run saves and exits 75.
  if r['gpus_per_run']:
    lines.append(f'#SBATCH --gres=gpu:{r["gpus_per_run"]}')
  if r['partition']:
    lines.append(f'#SBATCH --partition={r["partition"]}')
  if dependency:  # afterany: a branch whose parent failed fails itself (no checkpoint to fork), the others run.
    lines.append(f'#SBATCH --dependency=afterany:{dependency}')
  names = ' '.join(spec.name for spec in specs)
  lines += [f'NAMES=({names})', f'cd {REPOSITORY}',
            f'exec {sys.executable} -m lm.main sweep {study["path"]} --sweep_dir={sweep_dir} '
            '--only="${NAMES[$SLURM_ARRAY_TASK_ID]}"']
  return '\n'.join(lines) + '\n'


def launch_slurm(study_path: str, sweep_dir: str) -> list[str]:
  """Submits the unfinished runs as SLURM job arrays (cooldown branches in a second array that waits for the
  parents); returns the job ids. Resubmitting submits only what is neither done nor running."""
  study, specs = prepare(study_path, sweep_dir)
  study['path'] = os.path.abspath(study_path)
  job_name = f'lm-{os.path.basename(sweep_dir)}'
  queued = subprocess.run(['squeue', '--noheader', f'--name={job_name}', '--format=%i'], capture_output=True,
                          text=True).stdout.split() if shutil.which('squeue') else []
  if queued:  # Their tasks would be submitted twice: pending ones read as not started.
    raise errors.InputError(f'{sweep_dir} already has jobs queued or running ({" ".join(sorted(set(queued)))}): '
                            'wait for them, or scancel them, then submit again')
  todo = [i for i, spec in enumerate(specs)
          if results.run_status(results.run_dir(sweep_dir, spec.name)) not in ('done', 'running')]
  os.makedirs(os.path.join(sweep_dir, 'slurm'), exist_ok=True)
  job_ids, dependency = [], ''
  for wave in ([i for i in todo if not specs[i].parent], [i for i in todo if specs[i].parent]):
    if not wave:
      continue
    script = os.path.join(sweep_dir, 'slurm', f'array_{len(job_ids)}.sh')
    with open(script, 'w') as f:
      f.write(slurm_script(study, specs, sweep_dir, wave, dependency=dependency))
    try:
      submitted = subprocess.run(['sbatch', '--parsable', script], capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
      raise errors.MissingError(f'sbatch failed ({getattr(e, "stderr", "") or e}): is a SLURM cluster up? '
                                '(./run.sh cluster up makes this machine one)') from None
    dependency = submitted.stdout.strip().split(';')[0]
    job_ids.append(dependency)
    print(f'submitted {script} as job {dependency} ({len(wave)} runs)', flush=True)
  return job_ids


def print_commands(study_path: str, sweep_dir: str) -> None:
  """One shell command per run, for any other scheduler: the train command itself, or with cooldown branches
  (which must fork from their parents first) the sweep's own for that run; parents before their branches."""
  study, specs = prepare(study_path, sweep_dir)
  for spec in specs:
    if study.get('cooldowns'):
      command = [sys.executable, '-m', 'lm.main', 'sweep', os.path.abspath(study_path), f'--sweep_dir={sweep_dir}',
                 f'--only={spec.name}']
    else:
      command = command_line(spec, study['experiment'], sweep_dir)
    print(shlex.join(command))
