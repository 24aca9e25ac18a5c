"""A run directory's files: config.json read back in today's keys, metrics.jsonl without the rows a resumed run
redoes, and the parameter check that names what differs. (A whole run directory, trained, sampled and
evaluated, also as an older version wrote it: test_train.py's first test.)"""
import json

import numpy as np
import pytest

from experiments import base
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


def test_a_resumed_run_drops_the_metrics_it_will_log_again(tmp_path):
  log = rundir.MetricsLog(str(tmp_path), start_step=0)
  for step in (1, 2, 3, 4):
    log.write(step, 'train', {'loss': float(step)})
  log.close()
  log = rundir.MetricsLog(str(tmp_path), start_step=2)  # Resumed from step 2's checkpoint: 3 and 4 come again.
  log.write(3, 'train', {'loss': 30.0})
  log.close()
  rows = [json.loads(line) for line in (tmp_path / 'metrics.jsonl').read_text().splitlines()]
  assert [(r['step'], r['loss']) for r in rows] == [(1, 1.0), (2, 2.0), (3, 30.0)]


def test_check_same_params_names_the_parameter_that_differs():
  want = {'block_0': {'kernel': np.zeros((4, 8))}, 'embedding': np.zeros((10, 4))}
  rundir.check_same_params(want, {'block_0': {'kernel': np.ones((4, 8))}, 'embedding': np.ones((10, 4))}, 'x')
  with pytest.raises(ValueError, match=r'x: parameter block_0/kernel has shape \(4, 8\) in this model but \(4, 9\)'):
    rundir.check_same_params(want, {'block_0': {'kernel': np.zeros((4, 9))}, 'embedding': np.zeros((10, 4))}, 'x')
  with pytest.raises(ValueError, match=r'parameter embedding has shape \(10, 4\) in this model but \(missing\)'):
    rundir.check_same_params(want, {'block_0': {'kernel': np.zeros((4, 8))}}, 'x')
