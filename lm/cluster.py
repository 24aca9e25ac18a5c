"""A one-node SLURM cluster on this machine, for tests and laptops: `python -m lm.cluster up|down|status`
(`./run.sh cluster ...`).

`up` installs Debian's slurm-wlm and munge if they are missing, writes /etc/slurm/slurm.conf for this machine
(its short host name, CPUs and memory: `slurm_conf`), creates the munge key if there is none, starts munged,
slurmctld and slurmd on localhost and waits until `sinfo` shows the node idle. When the node already answers it
does nothing but say so. `down` stops the three daemons by their pid files; `status` prints sinfo.

Standard library only, and no jax: CI runs it on a fresh clone, before .venv exists.
"""
import argparse
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import sys
import time

from lm import errors

PACKAGES = ('slurm-wlm', 'munge')
PROGRAMS = ('munged', 'slurmctld', 'slurmd', 'sinfo', 'srun')  # What `up` needs of the packages.
CONF_PATH = '/etc/slurm/slurm.conf'  # Where Debian's slurm reads it.
MUNGE_KEY = '/etc/munge/munge.key'
MUNGE_RUN_DIR = '/run/munge'  # munged's socket and pid file; tmpfiles would make it, but no systemd runs here.
LOG_DIR = '/var/log/slurm'
SPOOL_DIRS = ('/var/spool/slurmctld', '/var/spool/slurmd')
START_TIMEOUT_S = 60
UP_STATES = ('idle', 'mixed', 'allocated', 'completing')  # A node that takes jobs (sinfo %T, no '*' suffix).


class Daemon:
  """One of the cluster's daemons: its program, the pid file it writes, its log, the user it runs as."""

  def __init__(self, name: str, pid_file: str, log: str, user: str = 'root'):
    self.name, self.pid_file, self.log, self.user = name, pid_file, log, user

  def pid(self) -> int | None:
    """The pid in its pid file if that process is this daemon (not a reused pid) and alive (not a zombie)."""
    try:
      with open(self.pid_file) as f:
        pid = int(f.read().split()[0])
      with open(f'/proc/{pid}/stat') as f:
        name, state = re.fullmatch(r'\d+ \((.*)\) (\S).*', f.read().strip(), re.S).groups()
      return pid if name == self.name and state != 'Z' else None
    except (OSError, ValueError, IndexError, AttributeError):
      return None


# In start order; `down` stops them in reverse.
DAEMONS = (
    Daemon('munged', f'{MUNGE_RUN_DIR}/munged.pid', '/var/log/munge/munged.log', user='munge'),
    Daemon('slurmctld', '/run/slurmctld.pid', f'{LOG_DIR}/slurmctld.log'),
    Daemon('slurmd', '/run/slurmd.pid', f'{LOG_DIR}/slurmd.log'),
)


def slurm_conf(hostname: str, cpus: int, memory_mb: int) -> str:
  """slurm.conf of a one-node cluster on `hostname` (its short name) with `cpus` CPUs and `memory_mb` for jobs."""
  return f"""\
# Written by lm/cluster.py (`./run.sh cluster up`) for this machine; `up` writes it again whenever it starts
# the cluster from stopped daemons.
ClusterName=lm
SlurmctldHost={hostname}(127.0.0.1)
SlurmUser=root
AuthType=auth/munge
CredType=cred/munge
# No cgroups: containers rarely give a writable cgroup tree. Processes are tracked by parent pid, tasks unbound.
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
MpiDefault=none
SchedulerType=sched/backfill
SelectType=select/cons_tres
SelectTypeParameters=CR_Core_Memory
# A job that asks no memory gets a CPU's share, not the whole node: jobs of one CPU each run side by side.
DefMemPerCPU={max(1, memory_mb // cpus)}
# A node marked down by an unclean stop comes back as soon as its slurmd registers again.
ReturnToService=2
SlurmctldPidFile={DAEMONS[1].pid_file}
SlurmdPidFile={DAEMONS[2].pid_file}
SlurmctldLogFile={DAEMONS[1].log}
SlurmdLogFile={DAEMONS[2].log}
StateSaveLocation={SPOOL_DIRS[0]}
SlurmdSpoolDir={SPOOL_DIRS[1]}
NodeName={hostname} NodeAddr=127.0.0.1 CPUs={cpus} RealMemory={memory_mb} State=UNKNOWN
PartitionName=local Nodes={hostname} Default=YES MaxTime=INFINITE State=UP
"""


def machine() -> tuple[str, int, int]:
  """(short host name, CPUs this process may use, MiB for jobs): 90% of the memory available now. RealMemory above
  what slurmd finds would drain the node; what the machine's other work uses is not the jobs'."""
  with open('/proc/meminfo') as f:
    available_kb = next(int(line.split()[1]) for line in f if line.startswith('MemAvailable:'))
  return socket.gethostname().split('.')[0], len(os.sched_getaffinity(0)), int(available_kb / 1024 * 0.9)


def node_state() -> str | None:
  """The node's state as sinfo prints it (e.g. 'idle', 'down*'), or None when no cluster answers."""
  if not shutil.which('sinfo'):
    return None
  try:
    result = subprocess.run(['sinfo', '--noheader', '--Node', '--format=%T'], capture_output=True, text=True,
                            timeout=10)
  except subprocess.TimeoutExpired:
    return None
  lines = result.stdout.split() if result.returncode == 0 else []
  return lines[0] if lines else None


def up() -> None:
  # sinfo retries for ~10 s when no slurmctld answers: ask it only when the daemons run.
  state = node_state() if all(daemon.pid() for daemon in DAEMONS) else None
  if state in UP_STATES:
    print(f'cluster: already up (node {state})')
    return
  require_root('start the cluster')
  start, started_at = time.perf_counter(), time.time()
  if missing_programs():
    install_packages()
  if not any(daemon.pid() for daemon in DAEMONS[1:]):  # A running one keeps the conf it read: no mismatch.
    write_conf(*machine())
  create_munge_key()
  started = [daemon.name for daemon in DAEMONS if start_daemon(daemon)]
  # A slurmd that ran already registers again with a new slurmctld, keeping its start time.
  state = wait_until_up(START_TIMEOUT_S, slurmd_since=started_at if 'slurmd' in started else 0)
  print(f'cluster: up in {time.perf_counter() - start:.1f}s (node {state}; {CONF_PATH})')


def down() -> None:
  stopped = [daemon.name for daemon in reversed(DAEMONS) if stop_daemon(daemon)]
  print(f'cluster: stopped {", ".join(stopped)}' if stopped else 'cluster: no daemon was running')


def status() -> None:
  for daemon in DAEMONS:
    pid = daemon.pid()
    print(f'{daemon.name}: ' + (f'running, pid {pid}' if pid else 'not running'))
  if not shutil.which('sinfo'):
    raise errors.MissingError('sinfo is not installed: `./run.sh cluster up` installs slurm-wlm and starts it')
  result = subprocess.run(['sinfo'], capture_output=True, text=True, timeout=10)
  print(result.stdout.rstrip() or result.stderr.rstrip())
  if result.returncode:
    raise errors.UserError('no cluster answers sinfo: `./run.sh cluster up` starts it')


def require_root(what: str) -> None:
  if os.geteuid() != 0:
    missing = missing_programs()
    hint = (f'; {", ".join(missing)} missing: install with `sudo apt-get install {" ".join(PACKAGES)}`'
            if missing else '')
    raise errors.UserError(f'needs root to {what} (it writes {CONF_PATH} and starts daemons as root): run '
                           f'`sudo ./run.sh cluster up`{hint}')


def missing_programs() -> list[str]:
  path = os.environ.get('PATH', '') + ':/usr/sbin:/sbin'  # The daemons live in sbin, not on every PATH.
  return [name for name in PROGRAMS if not shutil.which(name, path=path)]


def install_packages() -> None:
  """apt-get install of PACKAGES; if that fails (no package lists, or old ones), apt-get update and once more."""
  if not shutil.which('apt-get'):
    raise errors.MissingError(f'{", ".join(missing_programs())} missing and no apt-get here: install SLURM and '
                              'munge with this system\'s package manager')
  env = {**os.environ, 'DEBIAN_FRONTEND': 'noninteractive'}
  install = ['apt-get', 'install', '-y', '--no-install-recommends', *PACKAGES]
  print(f'cluster: installing {" ".join(PACKAGES)}', flush=True)
  start = time.perf_counter()
  result = subprocess.run(install, env=env, capture_output=True, text=True)
  if result.returncode:
    subprocess.run(['apt-get', 'update'], env=env, capture_output=True, text=True)
    result = subprocess.run(install, env=env, capture_output=True, text=True)
  if result.returncode:
    raise errors.OfflineError(f'`{" ".join(install)}` failed (exit {result.returncode}) after `apt-get update`:\n'
                              f'{_tail(result.stdout + result.stderr)}')
  print(f'cluster: installed in {time.perf_counter() - start:.1f}s', flush=True)
  if missing := missing_programs():
    raise errors.MissingError(f'installed {" ".join(PACKAGES)} but {", ".join(missing)} are still missing')


def write_conf(hostname: str, cpus: int, memory_mb: int) -> None:
  """slurm.conf for this machine, and the directories it names."""
  os.makedirs(os.path.dirname(CONF_PATH), exist_ok=True)
  with open(CONF_PATH, 'w') as f:
    f.write(slurm_conf(hostname, cpus, memory_mb))
  for directory in (LOG_DIR, *SPOOL_DIRS):
    os.makedirs(directory, exist_ok=True)


def create_munge_key() -> None:
  """1024 random bytes (what `mungekey -c` writes), readable by munge only, as munged insists."""
  munge = pwd.getpwnam('munge')
  for directory in (MUNGE_RUN_DIR, '/var/log/munge', '/var/lib/munge'):
    os.makedirs(directory, exist_ok=True)
    os.chown(directory, munge.pw_uid, munge.pw_gid)
  if os.path.exists(MUNGE_KEY):
    return
  descriptor = os.open(MUNGE_KEY, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o400)
  with os.fdopen(descriptor, 'wb') as f:
    f.write(os.urandom(1024))
  os.chown(MUNGE_KEY, munge.pw_uid, munge.pw_gid)


def start_daemon(daemon: Daemon) -> bool:
  """Starts `daemon` unless it runs (then False); each forks into the background once started, writing its pid
  file."""
  if daemon.pid():
    return False
  user = None if daemon.user == 'root' else daemon.user
  result = subprocess.run([shutil.which(daemon.name, path='/usr/sbin:/sbin:' + os.environ.get('PATH', ''))],
                          user=user, capture_output=True, text=True, timeout=START_TIMEOUT_S)
  if result.returncode:
    raise errors.UserError(f'{daemon.name} did not start (exit {result.returncode}): '
                           f'{(result.stdout + result.stderr).strip()}\nsee {daemon.log}:\n{_log_tail(daemon)}')
  return True


def wait_until_up(timeout_s: float, slurmd_since: float = 0) -> str:
  """The node's state once sinfo shows it idle (or running jobs) and its slurmd, started at `slurmd_since` or
  later, has registered; an error naming the daemon logs after `timeout_s`. (slurmctld restores a node's last
  state from its state files: idle before the new slurmd has said a word.)"""
  deadline = time.monotonic() + timeout_s
  while (state := node_state()) not in UP_STATES or slurmd_start_time() < slurmd_since:
    if time.monotonic() > deadline:
      logs = '\n'.join(f'{d.log}:\n{_log_tail(d)}' for d in DAEMONS[1:])
      dead = [d.name for d in DAEMONS if not d.pid()]
      raise errors.UserError(f'the node is not idle {timeout_s:.0f}s after the start (sinfo: {state or "no answer"}'
                             f'{"; not running: " + ", ".join(dead) if dead else ""}); see the daemon logs:\n{logs}')
    time.sleep(0.5)
  return state


def slurmd_start_time() -> float:
  """When the node's registered slurmd started (scontrol's SlurmdStartTime, whole seconds), or 0 if unknown."""
  result = subprocess.run(['scontrol', '--oneliner', 'show', 'node'], capture_output=True, text=True, timeout=10)
  found = re.search(r'\bSlurmdStartTime=(\S+)', result.stdout)
  try:
    return time.mktime(time.strptime(found.group(1), '%Y-%m-%dT%H:%M:%S')) + 1  # Cut to the second.
  except (AttributeError, ValueError):  # No node, or 'None' before any slurmd registered.
    return 0


def stop_daemon(daemon: Daemon, timeout_s: float = 20) -> bool:
  """SIGTERM to the daemon of its pid file, then waits for it to exit; False if it was not running."""
  pid = daemon.pid()
  if pid is None:
    return False
  try:
    os.kill(pid, signal.SIGTERM)
  except PermissionError:
    raise errors.UserError(f'needs root to stop {daemon.name} (pid {pid}): run `sudo ./run.sh cluster down`') from None
  deadline = time.monotonic() + timeout_s
  while daemon.pid() == pid:
    if time.monotonic() > deadline:
      raise errors.UserError(f'{daemon.name} (pid {pid}) still runs {timeout_s:.0f}s after SIGTERM; see {daemon.log}')
    time.sleep(0.2)
  return True


def _log_tail(daemon: Daemon, lines: int = 8) -> str:
  try:
    with open(daemon.log) as f:
      return _tail(f.read(), lines)
  except OSError as e:
    return f'  (unreadable: {e.strerror})'


def _tail(text: str, lines: int = 8) -> str:
  return '\n'.join('  ' + line for line in text.strip().splitlines()[-lines:])


def main(argv: list[str]) -> int:
  parser = argparse.ArgumentParser(prog='./run.sh cluster', description='A one-node SLURM cluster on this machine.')
  parser.add_argument('action', choices=('up', 'down', 'status'),
                      help='up: install if missing, start, wait for the node; down: stop the daemons; status: sinfo')
  action = {'up': up, 'down': down, 'status': status}[parser.parse_args(argv).action]
  try:
    action()
  except errors.UserError as e:
    print(f'error: {e}', file=sys.stderr)
    return 1
  return 0


if __name__ == '__main__':
  sys.exit(main(sys.argv[1:]))
