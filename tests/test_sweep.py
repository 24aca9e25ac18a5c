"""The sweep runner on tiny studies: each run is a real `python -m lm.main train` child process."""
import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from lm import results
from lm import rundir
from lm import sweep

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CORPUS = ''.join(f'line {i % 17} of a small corpus for sweeps.\n' for i in range(400))


def write_study(root, grid, **extra):
  """A study over experiments/shakespeare.py at a tiny shape on a text_files corpus in `root`."""
  (root / 'corpus.txt').write_text(CORPUS)
  fixed = {'model.num_layers': 1, 'model.d_model': 32, 'model.num_heads': 2, 'model.dtype': 'float32',
           'data.name': 'text_files', 'data.path': str(root / 'corpus.txt'), 'data.data_dir': str(root / 'tfds'),
           'data.seq_len': 16, 'train.batch_size': 4, 'train.eval_batch_size': 4, 'train.time_budget_s': 0,
           'train.warmup_steps': 2, 'train.log_every': 1, 'train.eval_every': 4, 'train.checkpoint_every': 4,
           'train.eval_batches': 2, 'decode.sample_num_tokens': 0, 'parallel.strategy': 'single',
           **extra.pop('fixed', {})}
  study = {'experiment': 'experiments/shakespeare.py', 'fixed': fixed, 'grid': grid, **extra}
  path = root / 'study.py'
  path.write_text(f'def get_study():\n  return {study!r}\n')
  return str(path)


def env():
  return {**os.environ, 'XLA_FLAGS': '--xla_backend_optimization_level=0 --xla_cpu_use_fusion_emitters=false'}


def sweep_command(study, sweep_dir):
  return [sys.executable, '-m', 'lm.main', 'sweep', study, f'--sweep_dir={sweep_dir}']


def losses(workdir):
  return {row['step']: row['loss'] for row in rundir.read_metrics(str(workdir), 'train')}


def test_a_sweep_runs_each_run_once_marks_a_failure_and_indexes_them_all(tmp_path):
  # num_heads=3 does not divide d_model=32: that run fails with a config error, the others go on.
  study = write_study(tmp_path, {'train.num_steps': [4, 6], 'model.num_heads': [2]},
                      runs=[{'train.num_steps': 4, 'model.num_heads': 3}])
  sweep_dir = tmp_path / 'sweep'
  first = subprocess.run(sweep_command(study, sweep_dir), capture_output=True, text=True, cwd=REPO, env=env(),
                         timeout=300)
  assert first.returncode == 1 and '1 run(s) of' in first.stderr, first.stdout + first.stderr
  rows = {row['name']: row for row in results.read_results(str(sweep_dir))}
  assert list(rows) == ['num_steps-4_num_heads-2', 'num_steps-6_num_heads-2', 'num_steps-4_num_heads-3']
  with open(sweep_dir / 'results.csv') as f:
    assert f.readline().strip().split(',') == list(results.RESULT_COLUMNS)
  done, failed = rows['num_steps-6_num_heads-2'], rows['num_steps-4_num_heads-3']
  assert [r['status'] for r in rows.values()] == ['done', 'done', 'failed']
  assert done['steps'] == 6 and done['D'] == 6 * 4 * 16 and done['C'] > 0 and done['N'] > 0
  validation = rundir.read_metrics(str(sweep_dir / 'runs' / 'num_steps-6_num_heads-2'), 'validation')
  assert [r['step'] for r in validation] == [4, 6] and done['final_loss'] == validation[-1]['loss']
  assert done['best_loss'] == min(r['loss'] for r in validation) and done['tokens_per_s'] > 0 and done['wall_s'] > 0
  assert 'model.num_heads=3 does not divide model.d_model=32' in failed['error']
  assert json.loads(done['overrides'])['train.num_steps'] == 6
  # Again: the finished runs are skipped (no child), the failed one is tried again and fails again.
  second = subprocess.run(sweep_command(study, sweep_dir), capture_output=True, text=True, cwd=REPO, env=env(),
                          timeout=300)
  assert 'num_steps-4_num_heads-2: done, skipped' in second.stdout and 'num_steps-6_num_heads-2: done, skipped' in (
      second.stdout)
  assert second.returncode == 1
  printed = subprocess.run([os.path.join(REPO, 'run.sh'), 'results', str(sweep_dir)], capture_output=True,
                           text=True, cwd=REPO, timeout=120)
  assert printed.returncode == 0 and printed.stdout.splitlines()[0].split()[:3] == ['name', 'status', 'N']


def test_a_run_killed_mid_way_resumes_and_matches_an_uninterrupted_one(tmp_path):
  study = write_study(tmp_path, {'train.num_steps': [12]})
  straight, killed = tmp_path / 'straight', tmp_path / 'killed'
  assert subprocess.run(sweep_command(study, straight), cwd=REPO, env=env(), timeout=300,
                        capture_output=True).returncode == 0
  runner = subprocess.Popen(sweep_command(study, killed), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  workdir = killed / 'runs' / 'num_steps-12'
  deadline = time.time() + 120
  while not (os.path.exists(workdir / 'metrics.jsonl') and max(losses(workdir), default=0) >= 6):
    assert time.time() < deadline and runner.poll() is None, runner.stdout.read()
    time.sleep(0.05)
  with open(workdir / 'lock') as f:
    os.kill(json.load(f)['pid'], signal.SIGKILL)  # The train child, mid-run: checkpoint at 4, not at 8.
  output = runner.communicate(timeout=60)[0]
  assert runner.returncode == 75 and 'exit status -9' in output, output
  assert results.run_status(str(workdir)) == 'interrupted'
  resumed = subprocess.run(sweep_command(study, killed), capture_output=True, text=True, cwd=REPO, env=env(),
                           timeout=300)
  assert resumed.returncode == 0 and 'num_steps-12: resuming' in resumed.stdout, resumed.stdout
  assert losses(workdir) == losses(straight / 'runs' / 'num_steps-12')
  assert results.read_results(str(killed))[0]['status'] == 'done'


def test_sigterm_to_the_sweep_reaches_the_run_which_saves_and_resumes(tmp_path):
  """SLURM's time-limit signal (or a kill) goes to the sweep process: it passes it on to its run (its own
  session), which saves and exits 75, and so does the sweep; the next launch resumes the run."""
  study = write_study(tmp_path, {'train.num_steps': [40]})
  runner = subprocess.Popen(sweep_command(study, tmp_path / 'sweep'), cwd=REPO, env=env(), stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
  workdir = tmp_path / 'sweep' / 'runs' / 'num_steps-40'
  deadline = time.time() + 120
  while not (os.path.exists(workdir / 'metrics.jsonl') and max(losses(workdir), default=0) >= 3):
    assert time.time() < deadline and runner.poll() is None, runner.stdout.read()
    time.sleep(0.05)
  runner.send_signal(signal.SIGTERM)
  output = runner.communicate(timeout=60)[0]
  assert runner.returncode == 75 and 'num_steps-40: exit status 75' in output, output
  step, = (int(name) for name in os.listdir(workdir / 'checkpoints'))
  assert 3 <= step < 40 and results.run_status(str(workdir)) == 'interrupted'
  with open(workdir / 'train.log') as f:
    assert 'received SIGTERM' in f.read()


def test_cooldown_branches_fork_from_the_parent_and_match_a_straight_wsd_run(tmp_path):
  """Also: a parent that fails (num_heads 3 does not divide width 32) fails its branches, and the others go on."""
  study = write_study(tmp_path, {'model.num_heads': [3, 2]}, cooldowns={'steps': [8, 12], 'fraction': 0.25},
                      fixed={'train.keep_checkpoints': 1})
  sweep_dir = tmp_path / 'sweep'
  result = subprocess.run(sweep_command(study, sweep_dir), capture_output=True, text=True, cwd=REPO, env=env(),
                          timeout=300)
  assert result.returncode == 1 and '3 run(s) of' in result.stderr, result.stdout + result.stderr
  rows = {row['name']: row for row in results.read_results(str(sweep_dir))}
  assert {name: row['status'] for name, row in rows.items()} == {
      'num_heads-3_stable-9': 'failed', 'num_heads-3_steps-8': 'failed', 'num_heads-3_steps-12': 'failed',
      'num_heads-2_stable-9': 'done', 'num_heads-2_steps-8': 'done', 'num_heads-2_steps-12': 'done'}
  assert 'has no checkpoint at step 6' in rows['num_heads-3_steps-8']['error']
  rows = {name.replace('num_heads-2', 'seed-0'): row for name, row in rows.items()}  # The trained size.
  for row in rows.values():
    row['parent'] = row['parent'].replace('num_heads-2', 'seed-0')
  parent = sweep_dir / 'runs' / 'num_heads-2_stable-9'
  assert sorted(os.listdir(parent / 'checkpoints')) == ['6', '9']  # The branch points, kept whatever keep 1.
  assert rows['seed-0_steps-12']['D'] == 12 * 4 * 16 and rows['seed-0_steps-12']['parent'] == 'seed-0_stable-9'
  # A straight WSD run of 12 steps (decay over the last 3) trains exactly as parent up to 9, then the branch.
  (tmp_path / 'x').mkdir()
  straight = write_study(tmp_path / 'x', {'train.num_steps': [12]},
                         fixed={'train.schedule': 'wsd', 'train.decay_fraction': 0.25})
  assert subprocess.run(sweep_command(straight, tmp_path / 'straight'), cwd=REPO, env=env(), timeout=300,
                        capture_output=True).returncode == 0
  want = losses(tmp_path / 'straight' / 'runs' / 'num_steps-12')
  got = losses(sweep_dir / 'runs' / 'num_heads-2_steps-12')
  assert sorted(got) == list(range(1, 13))  # The parent's rows up to the fork, then the branch's own.
  np.testing.assert_allclose([got[s] for s in range(1, 13)], [want[s] for s in range(1, 13)], rtol=1e-6)


def test_print_commands_gives_one_train_command_per_run(tmp_path, capsys):
  study = write_study(tmp_path, {'train.learning_rate': [1e-3, 3e-3]})
  sweep.print_commands(study, str(tmp_path / 'sweep'))
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 2 and all(' -m lm.main train ' in line for line in lines)
  assert '--config.train.learning_rate=0.003' in lines[1] and '/runs/learning_rate-0.003' in lines[1]


def test_a_slurm_script_asks_for_the_study_resources(tmp_path):
  study = sweep.load_study(write_study(tmp_path, {'seed': [0, 1]}, resources={'gpus_per_run': 1,
                                                                               'time_limit': '0:30:00'}))
  study['path'] = '/s/study.py'
  script = sweep.slurm_script(study, sweep.expand(study), '/s/sweep', [1], dependency='42')
  for line in ('#SBATCH --array=1', '#SBATCH --gres=gpu:1', '#SBATCH --time=0:30:00',
               '#SBATCH --dependency=afterany:42',
               'NAMES=(seed-0 seed-1)', '--only="${NAMES[$SLURM_ARRAY_TASK_ID]}"'):
    assert line in script, script


def test_a_study_with_an_unknown_key_is_refused(tmp_path):
  with pytest.raises(sweep.config_lib.ConfigError, match="did you mean 'train.learning_rate'"):
    sweep.load_study(write_study(tmp_path, {'train.learnin_rate': [1e-3]}))
