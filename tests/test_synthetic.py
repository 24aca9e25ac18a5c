"""Synthetic tasks are right, reproducible, keyed by their settings and fast."""

import time

import ml_collections
import pytest

from experiments import base
from lm.data import datasets
from lm.data import synthetic


def _full_data_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  """base.py's data config: the new builders read only declared keys."""
  config = base.get_config().data
  config.data_dir = str(data_dir)
  config.update(overrides)
  return config


@pytest.mark.parametrize('task', synthetic.SYNTHETIC_TASKS)
def test_synthetic_tasks_are_correct(tmp_path, task):
  config = _full_data_config(tmp_path, name=task, synthetic_length=7,
                             synthetic_examples=500)
  pairs = {split: datasets.split_pairs(config, split)
           for split in datasets.SPLITS}
  assert [len(pairs[s]) for s in datasets.SPLITS] == [500, 50, 50]
  for split in datasets.SPLITS:
    for inputs, targets in pairs[split]:
      if task == 'addition':
        a, b = inputs.split('+')
        assert len(a) == len(b) == 7 and a[0] != '0' and b[0] != '0'
        assert targets == str(int(a) + int(b))
      else:
        assert len(inputs) == 7 and inputs.isdigit()
        expected = {'copy': inputs, 'reverse': inputs[::-1],
                    'sort': ''.join(sorted(inputs))}[task]
        assert targets == expected
  # Splits are different draws.
  inputs = {s: {x for x, _ in pairs[s]} for s in datasets.SPLITS}
  assert not inputs['train'] & inputs['validation']
  assert inputs['validation'] != inputs['test']
  # split_texts gives input then target of each record, for tokenizers.
  assert datasets.split_texts(config, 'test')[:2] == list(pairs['test'][0])


def test_addition_carries_past_int64():
  inputs, targets = synthetic.synthetic_pairs('addition', 30, 200, seed=5)
  for x, y in zip(inputs, targets):
    a, b = x.split('+')
    assert y == str(int(a) + int(b))
  assert any(len(y) == 31 for y in targets)  # a carry out of the top digit.
  assert any(len(y) == 30 for y in targets)


def test_synthetic_is_deterministic_and_rekeyed(tmp_path):
  config = _full_data_config(tmp_path / 'a', name='sort', synthetic_length=5,
                             synthetic_examples=100)
  first = datasets.split_pairs(config, 'train')
  again = datasets.split_pairs(
      _full_data_config(tmp_path / 'b', name='sort', synthetic_length=5,
                        synthetic_examples=100), 'train')
  assert first == again  # prepared twice from scratch.
  assert len(set(first)) > 90
  assert synthetic.synthetic_pairs('sort', 5, 10, seed=0) != (
      synthetic.synthetic_pairs('sort', 5, 10, seed=1))
  # Each setting is its own prepared dataset.
  paths = {str(datasets.make_builder(_full_data_config(
      tmp_path, name=name, synthetic_length=length,
      synthetic_examples=examples)).data_path)
           for name, length, examples in [('sort', 5, 100), ('sort', 6, 100),
                                          ('sort', 5, 200), ('copy', 5, 100)]}
  assert len(paths) == 4
  config.synthetic_length = 6
  assert all(len(x) == 6 for x, _ in datasets.split_pairs(config, 'test'))


def test_synthetic_prepares_100k_examples_in_seconds(tmp_path):
  config = _full_data_config(tmp_path, name='addition')
  assert config.synthetic_examples == 100_000  # base.py's default.
  start = time.perf_counter()
  source = datasets.load_split(config, 'train')
  seconds = time.perf_counter() - start
  assert len(source) == 100_000
  assert seconds < 15, seconds  # about 2.5 s on 2 CPU cores.


def test_synthetic_settings_are_checked(tmp_path):
  with pytest.raises(ValueError, match='data.synthetic_length=0 must be >= 1'):
    datasets.make_builder(_full_data_config(tmp_path, name='copy',
                                            synthetic_length=0))
  with pytest.raises(ValueError, match='data.synthetic_examples=5 must be >= 10'):
    datasets.make_builder(_full_data_config(tmp_path, name='copy',
                                            synthetic_examples=5))
  with pytest.raises(ValueError, match="'shakespeare' holds documents"):
    datasets.split_pairs(_full_data_config(tmp_path), 'train')
