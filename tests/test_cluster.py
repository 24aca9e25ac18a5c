"""lm/cluster.py's slurm.conf and errors, without a cluster; then, on the cluster `./run.sh cluster up` starts,
the training command under `srun -n 2` against one process.

The SLURM tests skip, saying why, when no cluster answers sinfo; under CI=true (`.ci/run` brings the cluster up
first) conftest turns that skip into a failure.
"""
import os
import re
import shlex
import shutil
import subprocess
import sys
import time
import uuid

from conftest import FAST_COMPILE_FLAGS
import numpy as np
import pytest

from lm import cluster
from lm import errors
from lm import results
from lm import rundir

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def conf_settings(text: str) -> dict[str, str]:
  """slurm.conf's `Key=value` settings; the node and partition lines under their first key's value."""
  settings = {}
  for line in text.splitlines():
    if line and not line.startswith('#'):
      key, value = line.split('=', 1)
      assert key not in settings, f'{key} set twice'
      settings[key] = value
  return settings


def test_slurm_conf_describes_the_machine_given():
  settings = conf_settings(cluster.slurm_conf('node7', cpus=16, memory_mb=64_000))
  assert settings['SlurmctldHost'] == 'node7(127.0.0.1)'
  assert settings['NodeName'] == 'node7 NodeAddr=127.0.0.1 CPUs=16 RealMemory=64000 State=UNKNOWN'
  assert settings['PartitionName'] == 'local Nodes=node7 Default=YES MaxTime=INFINITE State=UP'
  assert settings['DefMemPerCPU'] == '4000'  # 64000 / 16: a one-CPU job leaves the others their memory.
  # What works in a container (ARCHITECTURE's stack facts): no cgroup plugins, cores and memory as resources.
  assert settings['ProctrackType'] == 'proctrack/linuxproc' and settings['TaskPlugin'] == 'task/none'
  assert settings['SelectType'] == 'select/cons_tres' and settings['SelectTypeParameters'] == 'CR_Core_Memory'
  assert settings['SlurmdPidFile'] == cluster.DAEMONS[2].pid_file  # Where `down` looks for it.


def test_machine_is_what_this_process_may_use():
  hostname, cpus, memory_mb = cluster.machine()
  assert hostname and '.' not in hostname
  assert cpus == len(os.sched_getaffinity(0))
  with open('/proc/meminfo') as f:
    total_mb = int(f.readline().split()[1]) / 1024  # MemTotal, the first line.
  assert 0 < memory_mb < total_mb


def test_cluster_imports_no_jax():
  """`./run.sh cluster` runs it with the system python3, before .venv exists: the standard library only."""
  code = 'import sys, lm.cluster; print(sorted({m.split(".")[0] for m in sys.modules} & {"jax", "numpy", "flax"}))'
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=60)
  assert result.returncode == 0 and result.stdout.strip() == '[]', result.stdout + result.stderr


def test_a_daemon_runs_only_if_its_pid_file_names_a_live_process_of_its_name(tmp_path):
  pid_file = tmp_path / 'daemon.pid'
  with open(f'/proc/{os.getpid()}/comm') as f:
    me = f.read().strip()
  assert cluster.Daemon(me, str(pid_file), 'log').pid() is None  # No pid file.
  pid_file.write_text(f'{os.getpid()}\n')
  assert cluster.Daemon(me, str(pid_file), 'log').pid() == os.getpid()
  assert cluster.Daemon('slurmd', str(pid_file), 'log').pid() is None  # A reused pid: another program.


def test_not_root_says_how_to_install(monkeypatch):
  monkeypatch.setattr(os, 'geteuid', lambda: 1000)
  monkeypatch.setattr(cluster, 'missing_programs', lambda: ['slurmd', 'munged'])
  with pytest.raises(errors.UserError, match=r'needs root.*sudo apt-get install slurm-wlm munge'):
    cluster.require_root('start the cluster')


def test_a_node_that_never_comes_up_names_the_daemon_logs(monkeypatch):
  monkeypatch.setattr(cluster, 'node_state', lambda: 'down*')
  with pytest.raises(errors.UserError, match=r'(?s)not idle.*sinfo: down\*.*slurmd\.log'):
    cluster.wait_until_up(timeout_s=0)


# On the cluster.


@pytest.fixture(scope='module')
def slurm():
  """Skips (a failure under CI=true) unless a SLURM cluster answers sinfo with a node that takes jobs."""
  if not shutil.which('sinfo'):
    pytest.skip('no SLURM here (sinfo not found): `./run.sh cluster up` installs and starts a one-node cluster')
  result = subprocess.run(['sinfo', '--noheader', '--Node', '--format=%T'], capture_output=True, text=True,
                          timeout=60)
  if result.returncode:
    pytest.skip(f'no SLURM cluster answers (sinfo: {result.stderr.strip()}): `./run.sh cluster up` starts one')
  if result.stdout.split()[0] not in cluster.UP_STATES:
    pytest.skip(f'the SLURM node is {result.stdout.strip()}: `./run.sh cluster down && ./run.sh cluster up`')


def test_up_again_only_says_so(slurm):
  result = subprocess.run([os.path.join(REPO, 'run.sh'), 'cluster', 'up'], capture_output=True, text=True,
                          timeout=60)
  assert result.returncode == 0 and result.stdout.startswith('cluster: already up'), result.stdout + result.stderr
  result = subprocess.run([os.path.join(REPO, 'run.sh'), 'cluster', 'status'], capture_output=True, text=True,
                          timeout=60)
  # sinfo's short state names; a test running beside this one may hold the node.
  assert result.returncode == 0 and re.search(r'slurmd: running.*\n.*\n.*\b(idle|mix|alloc|comp)',
                                              result.stdout), result.stdout + result.stderr


# 9 lines of 30 characters train (the last one validates): 270 characters and EOS, 8 rows of 32 targets, so a
# batch of 8 holds the whole train split whatever the number of processes it is split over (each reads its own
# rows), and one process and two see the same batches.
CORPUS = ''.join(f'{i} the quick brown fox jumps o\n' for i in range(10))
TRAIN_FLAGS = ('--config.model.num_layers=2', '--config.model.d_model=32', '--config.model.num_heads=4',
               '--config.model.dtype=float32', '--config.data.name=text_files', '--config.data.seq_len=32',
               '--config.train.batch_size=8', '--config.train.eval_batch_size=8', '--config.train.num_steps=5',
               '--config.train.warmup_steps=2', '--config.train.learning_rate=3e-3', '--config.train.log_every=1',
               '--config.train.checkpoint_every=100', '--config.decode.sample_num_tokens=0',
               '--config.parallel.strategy=mesh', '--config.parallel.mesh_shape=(8,1,1)')


def train_command(corpus, workdir):
  return [sys.executable, '-m', 'lm.main', 'train', f'--config={REPO}/experiments/base.py', f'--workdir={workdir}',
          f'--config.data.path={corpus}', f'--config.data.data_dir={corpus.parent / "tfds"}', *TRAIN_FLAGS]


def xla_flags(devices: int) -> str:
  return f'{FAST_COMPILE_FLAGS} --xla_force_host_platform_device_count={devices}'


def run_to_end(command, env, timeout_s, on_timeout=lambda: None):
  """The command's output once it exits 0; else fails with its output. Killed past `timeout_s`."""
  process = subprocess.Popen(command, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, start_new_session=True)
  try:
    output = process.communicate(timeout=timeout_s)[0]
  except subprocess.TimeoutExpired:
    on_timeout()
    os.killpg(process.pid, 9)
    pytest.fail(f'{command[:4]} still ran after {timeout_s} s: {process.communicate()[0][-3000:]}')
  assert process.returncode == 0, output[-3000:]
  return output


def test_two_srun_tasks_train_like_one_process(slurm, tmp_path):
  """`srun -n 2` of the training command, 4 fake CPU devices a task, finds SLURM's environment
  (parallel.initialize_distributed, no coordinator flags) and logs the losses one process of 8 devices logs."""
  corpus = tmp_path / 'data' / 'corpus.txt'
  corpus.parent.mkdir()
  corpus.write_text(CORPUS)
  # First, one process alone (SLURM_* removed: inside an allocation it would start jax.distributed). It also
  # prepares the data set, which the two tasks then only read.
  alone = {k: v for k, v in os.environ.items() if not k.startswith('SLURM_')}
  run_to_end(train_command(corpus, tmp_path / 'one'), {**alone, 'XLA_FLAGS': xla_flags(8)}, timeout_s=240)
  accounting, = rundir.read_metrics(str(tmp_path / 'one'), 'data')
  assert accounting['target_tokens'] == 8 * 32  # The whole train split is one batch.
  job = f'lm-test-{uuid.uuid4().hex[:8]}'  # To cancel whatever a timeout leaves.
  srun = ['srun', '--ntasks=2', '--kill-on-bad-exit=1', '--time=5', f'--job-name={job}']
  output = run_to_end(srun + train_command(corpus, tmp_path / 'two'), {**os.environ, 'XLA_FLAGS': xla_flags(4)},
                      timeout_s=300, on_timeout=lambda: subprocess.run(['scancel', f'--name={job}'], timeout=30))
  assert 'multi-host run' in output, output[-3000:]  # Process 0 of 2 says so instead of sampling.
  one, two = ([row['loss'] for row in rundir.read_metrics(str(tmp_path / run), 'train')] for run in ('one', 'two'))
  assert len(one) == len(two) == 5
  assert one[-1] < one[0]  # It trains: the comparison is of changing numbers.
  np.testing.assert_allclose(two, one, rtol=1e-6)  # To rounding (~1e-7 seen): gloo's sums against in-process ones.


def test_a_batch_script_trains_as_one_process(slurm, tmp_path):
  """sbatch runs its script as one process with SLURM_JOB_ID and SLURM_NTASKS but no job step: there the training
  command must start no jax.distributed (which finds no cluster and raises) and run alone."""
  code = ('import os, jax; from lm import parallel; parallel.initialize_distributed("", 1, 0, timeout_s=30); '
          'print(os.environ["SLURM_NTASKS"], "SLURM_STEP_NODELIST" in os.environ, jax.process_count())')
  job, output = f'lm-test-{uuid.uuid4().hex[:8]}', tmp_path / 'job.out'
  sbatch = ['sbatch', '--wait', '--ntasks=2', '--time=2', f'--job-name={job}', f'--output={output}',
            f'--chdir={REPO}', f'--wrap={shlex.join([sys.executable, "-c", code])}']
  run_to_end(sbatch, {**os.environ, 'PYTHONPATH': REPO}, timeout_s=120,
             on_timeout=lambda: subprocess.run(['scancel', f'--name={job}'], timeout=30))
  assert output.read_text().split() == ['2', 'False', '1'], output.read_text()


def test_a_study_submitted_to_slurm_finishes_with_a_full_results_table(slurm, tmp_path):
  """`./run.sh sweep --launcher=slurm` of a 4-run study: one job array, a task per run (each the local launcher
  on its one run), all done in results.csv; submitting again submits nothing."""
  import test_sweep  # The sweep tests' tiny study.
  study = test_sweep.write_study(tmp_path, {'train.learning_rate': [1e-3, 2e-3, 3e-3, 4e-3]},
                                 fixed={'train.num_steps': 4},
                                 resources={'cpus_per_run': 1, 'time_limit': '0:10:00'})
  sweep_dir = tmp_path / f'slurm_sweep_{uuid.uuid4().hex[:8]}'
  command = [sys.executable, '-m', 'lm.main', 'sweep', study, '--launcher=slurm', f'--sweep_dir={sweep_dir}']
  env = {**os.environ, 'XLA_FLAGS': FAST_COMPILE_FLAGS}
  output = run_to_end(command, env, timeout_s=120)
  assert 'submitted' in output and '(4 runs)' in output, output
  job = f'lm-{sweep_dir.name}'
  deadline = time.time() + 400
  while subprocess.run(['squeue', '--noheader', f'--name={job}'], capture_output=True, text=True).stdout.strip():
    if time.time() > deadline:
      subprocess.run(['scancel', f'--name={job}'], timeout=30)
      pytest.fail(f'the array still ran after 400 s: {os.listdir(sweep_dir / "slurm")}')
    time.sleep(1)
  rows = results.write_results(str(sweep_dir))
  assert [row['status'] for row in rows] == ['done'] * 4, [(r['name'], r['status'], r['error']) for r in rows]
  assert all(row['steps'] == 4 and row['final_loss'] > 0 for row in rows)
  assert 'submitted' not in run_to_end(command, env, timeout_s=120)  # Nothing left to do.
