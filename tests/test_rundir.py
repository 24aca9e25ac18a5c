"""A run directory's files: config.json read back in today's keys, metrics.jsonl read without the rows a resumed
run redid or a crash cut short, the lock of its one trainer, and the parameter check that names what differs.
(A whole run directory, trained, sampled and evaluated, also as an older version wrote it: test_train.py's first
test; two trainers on one run directory: test_train.py.)"""
import json
import os
import socket
import subprocess

import numpy as np
import pytest

from experiments import base
from lm import errors
from lm import rundir


def test_config_json_reads_back_as_written_with_tuples(tmp_path):
  config = base.get_config()
  config.eval.metrics = ('rouge', 'bleu')
  config.parallel.mesh_shape = (2, 2, 2)
  rundir.write_config(str(tmp_path), config)
  loaded = rundir.load_config(str(tmp_path))
  assert loaded.to_dict() == config.to_dict()  # JSON lists become tuples again.
  assert loaded.parallel.mesh_shape == (2, 2, 2) and loaded.eval.metrics == ('rouge', 'bleu')
  assert rundir.get_config(str(tmp_path)).to_dict() == config.to_dict()  # The --config=lm/rundir.py:DIR entry.


def test_an_old_config_json_loads_with_renamed_keys_and_former_attention_names(tmp_path):
  old = base.get_config().to_dict()
  old['sample'] = {'prompt': 'JULIET:', 'num_tokens': 7, 'temperature': 0.5, 'top_k': 0}
  for key in ('sample_prompt', 'sample_num_tokens', 'sample_temperature', 'sample_top_k'):
    del old['decode'][key]
  old['model']['attention'] = 'einsum'
  (tmp_path / 'config.json').write_text(json.dumps(old))
  loaded = rundir.load_config(str(tmp_path))
  assert loaded.decode.sample_prompt == 'JULIET:' and loaded.model.attention == 'fused'
  with pytest.raises(FileNotFoundError, match='is .* a run directory made by `./run.sh train`'):
    rundir.load_config(str(tmp_path / 'nowhere'))


def write_rows(workdir, start_step, rows):
  log = rundir.MetricsLog(str(workdir), start_step=start_step)
  for step, loss in rows:
    log.write(step, 'train', {'loss': loss})
  log.close()


def test_a_resume_appends_a_marker_and_read_metrics_drops_the_redone_rows(tmp_path):
  write_rows(tmp_path, 0, [(1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0)])
  first = (tmp_path / 'metrics.jsonl').read_text()
  write_rows(tmp_path, 2, [(3, 30.0)])  # Resumed from step 2's checkpoint: 3 and 4 come again.
  assert (tmp_path / 'metrics.jsonl').read_text().startswith(first)  # Appended to, never rewritten.
  assert [(r['step'], r['loss']) for r in rundir.read_metrics(str(tmp_path), 'train')] == [
      (1, 1.0), (2, 2.0), (3, 30.0)]
  marker = rundir.read_metrics(str(tmp_path))[2]
  assert (marker['step'], marker['split'], marker['pid']) == (2, 'resume', os.getpid())
  # A resume from an earlier step than the last one (its checkpoint lost) supersedes that resume row too.
  write_rows(tmp_path, 1, [(2, 200.0)])
  assert [(r['step'], r['split'], r.get('loss')) for r in rundir.read_metrics(str(tmp_path))] == [
      (1, 'train', 1.0), (1, 'resume', None), (2, 'train', 200.0)]


def test_read_metrics_skips_a_row_a_crash_cut_short(tmp_path):
  write_rows(tmp_path, 0, [(1, 1.0), (2, 2.0)])
  path = tmp_path / 'metrics.jsonl'
  with open(path, 'a') as f:
    f.write('{"step": 3, "split": "tr')  # Killed mid-write, or the disk filled.
  assert [r['step'] for r in rundir.read_metrics(str(tmp_path), 'train')] == [1, 2]
  write_rows(tmp_path, 2, [(3, 3.0)])  # The restart ends the cut line, so its resume row starts a line.
  assert path.read_text().splitlines()[2] == '{"step": 3, "split": "tr'
  assert [r['step'] for r in rundir.read_metrics(str(tmp_path), 'train')] == [1, 2, 3]
  path.write_text(path.read_text().replace('{"step": 2, "split": "train"', '{"step": 2, "spl'))
  with pytest.raises(errors.InputError, match='metrics.jsonl line 2 is no metrics row'):
    rundir.read_metrics(str(tmp_path))  # Not the work of a crash: said, not skipped.


def test_a_locked_run_directory_refuses_a_second_lock_naming_the_holder(tmp_path):
  with rundir.WorkdirLock(str(tmp_path)):
    holder = json.loads((tmp_path / 'lock').read_text())
    assert (holder['host'], holder['pid']) == (socket.gethostname(), os.getpid())
    with pytest.raises(errors.WorkdirBusy) as refused:
      rundir.WorkdirLock(str(tmp_path))  # A second open file: flock refuses it as it would another process.
    assert str(refused.value) == (
        f'{tmp_path} is being trained by pid {os.getpid()} on host {socket.gethostname()} since '
        f'{holder["since"]}: wait for that run to finish (or stop it), or train in another --workdir.')
    assert str(rundir.busy_error(str(tmp_path))) == str(refused.value)  # As the job's other processes say it.
  assert (tmp_path / 'lock').read_text() == ''  # Released: it names no holder.
  rundir.WorkdirLock(str(tmp_path)).release()


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tmp_path, capsys):
  dead = subprocess.Popen(['true'])
  dead.wait()  # Its pid names no process now; its flock, had it one, went with it.
  (tmp_path / 'lock').write_text(json.dumps({'host': 'node7', 'pid': dead.pid, 'since': '2024-01-01T00:00:00'}))
  lock = rundir.WorkdirLock(str(tmp_path))
  assert capsys.readouterr().err == (
      f'warning: taking over the lock of {tmp_path} from pid {dead.pid} on host node7, which is gone\n')
  assert json.loads((tmp_path / 'lock').read_text())['pid'] == os.getpid()
  lock.release()
  rundir.WorkdirLock(str(tmp_path)).release()  # Released cleanly: nothing to take over, no warning.
  assert capsys.readouterr().err == ''


def test_check_same_params_names_the_parameter_that_differs():
  want = {'block_0': {'kernel': np.zeros((4, 8))}, 'embedding': np.zeros((10, 4))}
  rundir.check_same_params(want, {'block_0': {'kernel': np.ones((4, 8))}, 'embedding': np.ones((10, 4))}, 'x')
  with pytest.raises(ValueError, match=r'x: parameter block_0/kernel has shape \(4, 8\) in this model but \(4, 9\)'):
    rundir.check_same_params(want, {'block_0': {'kernel': np.zeros((4, 9))}, 'embedding': np.zeros((10, 4))}, 'x')
  with pytest.raises(ValueError, match=r'parameter embedding has shape \(10, 4\) in this model but \(missing\)'):
    rundir.check_same_params(want, {'block_0': {'kernel': np.zeros((4, 8))}}, 'x')
