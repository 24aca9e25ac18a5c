"""Entry points: data dir, names and splits are checked; catalogue datasets read
their features through the config keys and fail fast offline."""

import os
import socket
import threading
import time

import ml_collections
import pytest
import tensorflow_datasets as tfds

from experiments import base
from lm import errors
from lm.data import datasets


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = dict(name='shakespeare', path='', data_dir='', source_dir='',
                tokenizer='char', seq_len=16, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def test_data_dir_defaults(monkeypatch):
  monkeypatch.setenv('TFDS_DATA_DIR', '/some/where')
  assert datasets.data_dir('') == '/some/where'
  assert datasets.data_dir('~/x') == os.path.expanduser('~/x')
  monkeypatch.delenv('TFDS_DATA_DIR')
  assert datasets.data_dir('') == os.path.expanduser('~/tensorflow_datasets')


def test_unknown_name_and_split_are_named(tmp_path):
  with pytest.raises(ValueError, match=r"'wiki'.*'shakespeare'"):
    datasets.load_split(_data_config(name='wiki'), 'train')
  with pytest.raises(ValueError, match=r"'dev'.*'validation'"):
    datasets.load_split(_data_config(data_dir=str(tmp_path)), 'dev')


def _full_data_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  """base.py's data config: the new builders read only declared keys."""
  config = base.get_config().data
  config.data_dir = str(data_dir)
  config.update(overrides)
  return config


@pytest.fixture
def offline(monkeypatch):
  """No network, and any download attempt fails the test."""
  def no_connection(*args, **kwargs):
    raise OSError('network disabled by the test')

  def no_download(self, *args, **kwargs):
    raise AssertionError('download_and_prepare called while offline')

  monkeypatch.setattr(socket, 'create_connection', no_connection)
  monkeypatch.setattr(datasets, 'network_available', lambda *a, **k: False)
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      no_download)


@pytest.mark.parametrize('name', ['cnn_dailymail', 'wmt14_translate/de-en'])
def test_unprepared_catalogue_dataset_fails_fast_offline(
    offline, tmp_path, name):
  config = _full_data_config(tmp_path / 'tfds', name=name)
  start = time.perf_counter()
  with pytest.raises(RuntimeError) as error:
    datasets.load_split(config, 'train')
  assert time.perf_counter() - start < 5
  message = str(error.value)
  assert repr(name) in message
  assert f'not prepared in {tmp_path / "tfds"}' in message
  assert (f"tfds.builder('{name}', data_dir='DIR', "
          "file_format='array_record')") in message
  assert '--config.data.data_dir=DIR' in message


def test_catalogue_dataset_downloads_when_online(monkeypatch, tmp_path):
  calls = []

  def fake_download(self, *args, **kwargs):
    calls.append((self.name, kwargs))
    raise InterruptedError('stop before any real download')

  monkeypatch.setattr(datasets, 'network_available', lambda *a, **k: True)
  monkeypatch.setattr(tfds.core.DatasetBuilder, 'download_and_prepare',
                      fake_download)
  with pytest.raises(InterruptedError):
    datasets.load_split(_full_data_config(tmp_path, name='xsum'), 'train')
  (name, kwargs), = calls
  assert name == 'xsum'
  assert kwargs['download_config'].compute_stats == (
      tfds.download.ComputeStatsMode.SKIP)


def test_unknown_catalogue_name_lists_ours(offline, tmp_path):
  with pytest.raises(ValueError) as error:
    datasets.load_split(_full_data_config(tmp_path, name='no_such_corpus'),
                        'train')
  message = str(error.value)
  assert "'no_such_corpus'" in message
  assert all(repr(name) in message for name in datasets.OUR_NAMES)
  assert len(message) < 1000  # not tfds' list of every dataset.


def test_network_probe_gives_up_in_time(monkeypatch):
  release = threading.Event()

  def hang(*args, **kwargs):
    release.wait(30)  # a name lookup that never answers.
    raise OSError('late')

  monkeypatch.setattr(socket, 'create_connection', hang)
  start = time.perf_counter()
  try:
    assert not datasets.network_available(timeout=0.5)
  finally:
    release.set()
  assert time.perf_counter() - start < 2

  def refuse(*args, **kwargs):
    raise ConnectionRefusedError('refused')

  monkeypatch.setattr(socket, 'create_connection', refuse)
  assert not datasets.network_available()


def test_catalogue_features_are_read_through_the_config_keys(
    monkeypatch, tmp_path):
  records = [{'question': b'Who?', 'context': b'Ada wrote it.',
              'answers': {'text': [b'Ada', b'Ada Lovelace'],
                          'answer_start': [0, 0]},
              'article': b'A long article.', 'highlights': b'Short.',
              'text': b'Some text.'}]
  monkeypatch.setattr(datasets, 'load_split', lambda *args: records)
  config = _full_data_config(tmp_path, name='squad',
                             **datasets.catalogue_features('squad'))
  assert datasets.split_pairs(config, 'train') == [
      ('question: Who? context: Ada wrote it.', 'Ada')]
  config.input_key = 'question+context'  # Joined by a newline.
  assert datasets.split_pairs(config, 'train') == [
      ('Who?\nAda wrote it.', 'Ada')]
  config.input_key = 'Q {question} A {answers/text}'  # Templates nest too.
  assert datasets.split_pairs(config, 'train') == [('Q Who? A Ada', 'Ada')]
  config.input_key = 'question: {query}'
  with pytest.raises(errors.InputError, match=r"no feature 'query'"):
    datasets.split_pairs(config, 'train')
  config = _full_data_config(tmp_path, name='cnn_dailymail:3.4.0',
                             **datasets.catalogue_features('cnn_dailymail'))
  assert datasets.split_pairs(config, 'train') == [
      ('A long article.', 'Short.')]
  config = _full_data_config(tmp_path, name='c4/en',
                             **datasets.catalogue_features('c4/en'))
  assert datasets.split_texts(config, 'train') == ['Some text.']
  # base.py's default seq2seq keys do not fit cnn_dailymail: say which do.
  config = _full_data_config(tmp_path, name='cnn_dailymail')
  with pytest.raises(errors.InputError, match=r"no feature 'inputs'.*'highlights'"):
    datasets.split_pairs(config, 'train')


def test_catalogue_table_covers_the_common_datasets():
  assert datasets.catalogue_features('wmt14_translate/de-en') == {
      'input_key': 'de', 'target_key': 'en'}
  assert datasets.catalogue_features('lm1b') == {'text_key': 'text'}
  assert datasets.catalogue_features('wikipedia/20230601.en') == {
      'text_key': 'text'}
  assert datasets.catalogue_features('xsum')['target_key'] == 'summary'
  assert datasets.catalogue_features('mnist') == {}
