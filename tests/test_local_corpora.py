"""data.name='local': every format gives the same documents, converted once, resumably, with bounded memory; splits
by file name or by a held-out fraction; malformed records named by file and line, skipped only as allowed."""

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import time

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import tensorflow_datasets as tfds
from tensorflow_datasets.core import example_serializer
from tensorflow_datasets.proto import tf_example_pb2
import zstandard

from experiments import base
from lm import config as config_lib
from lm import errors
from lm import tokenizers
from lm.data import datasets
from lm.data import local
from lm.data import pipeline
from lm.data import sources
from lm.data import stats

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# No newline inside (a .txt line is a document); quotes, backslashes, tabs and non-ASCII for the JSON writers.
DOCS = ['the first document', 'deux: café, naïve', 'a tab\there, "quotes" and a \\ backslash', '中文 text',
        '  leading spaces kept', 'the last one']


def _config(tmp_path, path, **overrides):
  c = base.get_config().data
  c.update(name='local', path=str(path), data_dir=str(tmp_path / 'tfds'))
  c.update(overrides)
  return c


def _held_out_file(folder) -> None:
  """A file the name of which holds it out: the others then train whole."""
  (folder / 'valid.txt').write_text('held out\n')


def _titles(config, split) -> list[str]:
  source = datasets.load_split(config, split)
  return [source[i]['title'].decode() for i in range(len(source))]


def _jsonl(docs, key='text') -> bytes:
  return b''.join(json.dumps({key: d, 'id': i}).encode() + b'\n' for i, d in enumerate(docs))


def _zst(data: bytes) -> bytes:  # Two frames, as pzstd and concatenated shards write them.
  half = len(data) // 2
  compressor = zstandard.ZstdCompressor()
  return compressor.compress(data[:half]) + compressor.compress(data[half:])


# Each writer puts DOCS in one file; line-based ones add a blank line after the second document (no record, but
# the lines after it count it), so the titles' numbers are lines 1, 2, 4, 5, ...
WRITERS = {
    'corpus.txt': lambda: ('\n'.join(DOCS[:2]) + '\n\n' + '\n'.join(DOCS[2:]) + '\n').encode(),
    'corpus.txt.gz': lambda: gzip.compress(WRITERS['corpus.txt']()),
    'corpus.jsonl': lambda: _jsonl(DOCS[:2]) + b'\n' + _jsonl(DOCS[2:]),
    'corpus.jsonl.gz': lambda: gzip.compress(WRITERS['corpus.jsonl']()),
    'corpus.jsonl.zst': lambda: _zst(WRITERS['corpus.jsonl']()),
    'c4-train.00000-of-00001.json.gz': lambda: WRITERS['corpus.jsonl.gz'](),
}


@pytest.mark.parametrize('name', [*WRITERS, 'corpus.parquet'])
def test_every_format_gives_the_same_documents(tmp_path, name):
  path = tmp_path / 'corpus' / name
  path.parent.mkdir()
  if name.endswith('.parquet'):  # Row groups of 2 rows: the reader goes group by group.
    pq.write_table(pa.table({'id': list(range(len(DOCS))), 'text': DOCS}), path, row_group_size=2)
    numbers = range(1, len(DOCS) + 1)
  else:
    path.write_bytes(WRITERS[name]())
    numbers = [1, 2, *range(4, len(DOCS) + 2)]
  _held_out_file(path.parent)
  config = _config(tmp_path, path.parent)  # The directory: its files are found in it.
  assert datasets.split_texts(config, 'train') == DOCS
  assert _titles(config, 'train') == [f'{name}:{n}' for n in numbers]
  assert datasets.split_texts(config, 'validation') == ['held out']
  assert _titles(config, 'test') == ['valid.txt:1']  # No test file: test repeats validation.


def test_json_text_keeps_its_newlines_and_text_key_names_the_field(tmp_path):
  (tmp_path / 'c.jsonl').write_bytes(_jsonl(['two\nlines', 'one'], key='body'))
  _held_out_file(tmp_path)
  config = _config(tmp_path, tmp_path, text_key='body')
  assert datasets.split_texts(config, 'train') == ['two\nlines', 'one']


def test_records_serialize_as_tfds_writes_them():
  features = local.features()
  serializer = example_serializer.ExampleSerializer(features.get_serialized_info())
  for text, title in [('', 'a:1'), ('é' * 300, 'dir/b.jsonl:12'), ('x' * 100_000, 'c:3')]:
    ours = local.serialize(text, title)
    # The same message; TFDS's bytes order the two features either way from run to run.
    assert tf_example_pb2.Example.FromString(ours) == tf_example_pb2.Example.FromString(
        serializer.serialize_example(features.encode_example({'text': text, 'title': title})))


@pytest.mark.parametrize('start', [0, 3, 4, 6])
def test_reading_continues_after_start_lines_or_rows(tmp_path, start):
  pq.write_table(pa.table({'text': DOCS}), tmp_path / 'p.parquet', row_group_size=2)  # 3 starts mid-group.
  (tmp_path / 'l.jsonl.zst').write_bytes(_zst(_jsonl(DOCS)))
  for name in ('p.parquet', 'l.jsonl.zst'):
    read = list(sources.read_records(str(tmp_path / name), 'text', start))
    assert read == [(n, DOCS[n - 1], '') for n in range(start + 1, len(DOCS) + 1)]


def _count_reads(monkeypatch) -> list[tuple[str, int]]:
  """Records each read_records call as (file name, lines skipped)."""
  calls, read = [], sources.read_records
  monkeypatch.setattr(sources, 'read_records', lambda path, key, start=0: (
      calls.append((os.path.basename(path), start)), read(path, key, start))[1])
  return calls


def test_a_corpus_is_converted_once_and_again_only_when_edited(tmp_path, monkeypatch):
  (tmp_path / 'a.jsonl').write_bytes(_jsonl(DOCS[:3]))
  (tmp_path / 'b.txt').write_text('\n'.join(DOCS[3:]) + '\n')
  _held_out_file(tmp_path)
  config = _config(tmp_path, tmp_path / '*.*')  # A glob.
  calls = _count_reads(monkeypatch)
  assert datasets.split_texts(config, 'train') == DOCS
  assert calls == [('a.jsonl', 0), ('b.txt', 0), ('valid.txt', 0)]
  # The second use reads the ArrayRecord files only: a source read would fail.
  monkeypatch.setattr(sources, 'read_records', lambda *args: pytest.fail('a source was read again'))
  assert datasets.split_texts(config, 'train') == DOCS
  assert _titles(config, 'train')[3] == 'b.txt:1'
  monkeypatch.undo()
  (tmp_path / 'b.txt').write_text('edited\n')
  stat = (tmp_path / 'b.txt').stat()  # Same mtime on a coarse clock? Move it on anyway.
  os.utime(tmp_path / 'b.txt', ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
  assert datasets.split_texts(config, 'train') == DOCS[:3] + ['edited']


_KILLED_CONVERSION = """
import os, signal, sys
from experiments import base
from lm.data import datasets, local
local._CHUNK_RECORDS = 50
written, write = [], local._Chunk.write
def write_then_die(self, split, record):
  write(self, split, record)
  written.append(split)
  if len(written) == 175:  # 100 records of a.jsonl, 75 of b.jsonl: b's second chunk half written.
    os.kill(os.getpid(), signal.SIGKILL)
local._Chunk.write = write_then_die
c = base.get_config().data
c.update(name='local', path=sys.argv[1], data_dir=sys.argv[2], validation_fraction=0.2)
datasets.prepare(c)
"""


def test_a_killed_conversion_is_not_finished_and_continues_after_its_last_chunk(tmp_path, monkeypatch):
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  (corpus / 'a.jsonl').write_bytes(_jsonl([f'a{i}' for i in range(100)]))
  (corpus / 'b.jsonl').write_bytes(_jsonl([f'b{i}' for i in range(200)]))
  config = _config(tmp_path, corpus, validation_fraction=0.2)
  killed = subprocess.run([sys.executable, '-c', _KILLED_CONVERSION, str(corpus), config.data_dir], cwd=REPO,
                          env={**os.environ, 'PYTHONPATH': REPO}, capture_output=True, text=True, timeout=120)
  assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
  builder = datasets.make_builder(config)
  assert not builder.is_prepared()
  assert not os.path.exists(builder.data_dir)
  left = sorted(os.listdir(builder.work_dir))
  # a.jsonl: chunks 0-2 (the last one empty, closing the file); b.jsonl: chunk 0, and chunk 1 without a manifest.
  assert [n for n in left if n.endswith('.json')] == [
      'chunk-00000-00000.json', 'chunk-00000-00001.json', 'chunk-00000-00002.json', 'chunk-00001-00000.json']
  assert 'chunk-00001-00001.train.array_record' in left
  incomplete = [n for n in os.listdir(os.path.dirname(builder.data_dir)) if n.startswith('incomplete.')]
  assert len(incomplete) == 1  # TFDS's folder, which a kill leaves behind.

  calls = _count_reads(monkeypatch)
  resumed = {split: (datasets.split_texts(config, split), _titles(config, split)) for split in datasets.SPLITS}
  assert calls == [('b.jsonl', 50)]  # a.jsonl not opened; b.jsonl after its first chunk's 50 lines.
  parent = os.path.dirname(builder.data_dir)
  assert sorted(os.listdir(parent)) == ['1.0.0', '1.0.0.lock']  # Work folder and stale incomplete one gone.
  monkeypatch.undo()
  fresh_config = _config(tmp_path / 'fresh', corpus, validation_fraction=0.2)
  fresh = {split: (datasets.split_texts(fresh_config, split), _titles(fresh_config, split))
           for split in datasets.SPLITS}
  assert resumed == fresh
  assert sorted(resumed['train'][0] + resumed['validation'][0]) == sorted(
      [f'a{i}' for i in range(100)] + [f'b{i}' for i in range(200)])


def test_splits_by_file_name(tmp_path):
  files = {
      'train-00000-of-00002.parquet': 'train', 'c4-validation.00000-of-00008.json.gz': 'validation',
      'dev.txt': 'validation', 'valid.jsonl': 'validation', 'test-00000-of-00001.jsonl.zst': 'test',
      'contest.jsonl': 'train', 'interval.txt': 'train',  # Held-out words inside other words do not count.
  }
  corpus = tmp_path / 'corpus'
  (corpus / 'sub').mkdir(parents=True)
  (corpus / 'README.md').write_text('# not a corpus file: skipped in a directory')
  expected = {'train': [], 'validation': [], 'test': []}
  for i, (name, split) in enumerate(sorted(files.items())):
    assert local.split_of_file(name) == split
    docs = [f'{name} {j}' for j in range(3)]
    path = corpus / ('sub' if i % 2 else '') / name
    if name.endswith('.parquet'):
      pq.write_table(pa.table({'text': docs}), path)
    elif name.endswith('.txt'):
      path.write_text('\n'.join(docs) + '\n')
    else:
      path.write_bytes({'.gz': gzip.compress, '.zst': _zst}.get(path.suffix, bytes)(_jsonl(docs)))
    expected[split].append((str(path.relative_to(corpus)), docs))
  # A held-out fraction is ignored once files name the splits.
  config = _config(tmp_path, corpus, validation_fraction=0.5)
  for split, entries in expected.items():
    entries.sort()  # Files are read in sorted path order.
    assert datasets.split_texts(config, split) == [doc for _, docs in entries for doc in docs]
    assert _titles(config, split)[0] == f'{entries[0][0]}:1'


def _held_out(config) -> dict[str, set[str]]:
  return {split: set(_titles(config, split)) for split in datasets.SPLITS}


def test_splits_by_fraction_are_deterministic_disjoint_and_covering(tmp_path):
  corpus = tmp_path / 'corpus'
  corpus.mkdir()
  for name in ('a', 'b'):
    (corpus / f'{name}.jsonl').write_bytes(_jsonl([f'{name}{i}' for i in range(1500)]))
  config = _config(tmp_path, corpus, validation_fraction=0.1, test_fraction=0.05)
  titles = _held_out(config)
  every = {f'{name}.jsonl:{i}' for name in 'ab' for i in range(1, 1501)}
  assert set().union(*titles.values()) == every
  assert sum(map(len, titles.values())) == len(every)  # Disjoint.
  for split, fraction in (('validation', 0.1), ('test', 0.05)):  # Binomial: within 4 standard deviations.
    assert abs(len(titles[split]) - fraction * 3000) < 4 * (3000 * fraction * (1 - fraction)) ** 0.5
  assert _held_out(_config(tmp_path / 'again', corpus, validation_fraction=0.1, test_fraction=0.05)) == titles
  # A file added later leaves the others' records where they were.
  (corpus / 'c.jsonl').write_bytes(_jsonl(['c0', 'c1']))
  grown = _held_out(_config(tmp_path / 'grown', corpus, validation_fraction=0.1, test_fraction=0.05))
  assert {split: {t for t in grown[split] if not t.startswith('c')} for split in grown} == titles
  # Without a test fraction, test repeats validation; another fraction is another dataset.
  other = _config(tmp_path, corpus, validation_fraction=0.2)
  assert _titles(other, 'test') == _titles(other, 'validation')
  assert len(_titles(other, 'validation')) > len(titles['validation'])
  assert datasets.make_builder(other).data_dir != datasets.make_builder(config).data_dir


def test_a_corpus_with_nothing_held_out_is_an_error(tmp_path):
  (tmp_path / 'tiny.txt').write_text('one\ntwo\n')
  config = _config(tmp_path, tmp_path / 'tiny.txt', validation_fraction=0.01)
  with pytest.raises(errors.InputError, match=r'validation_fraction=0.01 held out none of its 2 records'):
    datasets.prepare(config)
  assert not datasets.make_builder(config).is_prepared()
  config.validation_fraction = 0.0  # Said before any conversion.
  with pytest.raises(errors.InputError, match=r'hold nothing out, and no file of data.path=.* is named by split'):
    datasets.make_builder(config)
  (tmp_path / 'test.txt').write_text('')  # A held-out file, but empty.
  config.path = str(tmp_path)
  with pytest.raises(errors.InputError, match=r'its held-out files hold no records'):
    datasets.prepare(config)


def _gz(data: bytes) -> bytes:
  return gzip.compress(data, mtime=0)  # The same bytes in every process: pytest-xdist's workers collect alike.


@pytest.mark.parametrize('name, content, where, problem', [
    ('c.jsonl', b'{"text": "ok"}\n{"text": \n', ':2', 'not valid JSON'),
    ('c.jsonl', b'{"text": "ok"}\n\n{"body": "x"}\n', ':3', "no 'text' field (data.text_key); it has ['body']"),
    ('c.jsonl', b'{"text": 5}\n', ':1', "'text' is a int, not a string"),
    ('c.jsonl', b'{"text": "ok"}\n{"text": null}\n', ':2', "'text' is null, not a string"),
    ('c.json', b'["text"]\n', ':1', 'a JSON list, not an object'),
    ('c.jsonl', b'{"text": "ok"}\n{"text": "caf\xe9"}\n', ':2', r"not valid UTF-8 (byte b'\xe9' at column 14)"),
    ('c.txt', b'ok\nfine\ncaf\xe9\n', ':3', r"not valid UTF-8 (byte b'\xe9' at column 4)"),
    ('c.jsonl.gz', _gz(b'{"text": "ok"}\n{"text": "ok",}\n'), ':2', 'not valid JSON'),
    ('c.parquet', None, ' row 3', "'text' is null, not a string"),
], ids=['bad_json', 'no_text_key', 'int_text', 'null_text', 'json_list', 'jsonl_not_utf8', 'txt_not_utf8',
        'gzip_bad_json', 'parquet_null'])
def test_a_malformed_record_names_its_file_and_line(tmp_path, name, content, where, problem):
  path = tmp_path / name
  if content is None:
    pq.write_table(pa.table({'text': ['a', 'b', None, 'd']}), path, row_group_size=2)
  else:
    path.write_bytes(content)
  with pytest.raises(errors.InputError) as error:
    datasets.prepare(_config(tmp_path, path))
  message = str(error.value)
  assert message.startswith(f'{path}{where}: {problem}'), message
  assert '--config.data.skip_bad_records=N' in message and '\n' not in message


def test_a_corrupt_stream_and_a_missing_column_name_the_file(tmp_path):
  (tmp_path / 'cut.jsonl.gz').write_bytes(gzip.compress(_jsonl(DOCS * 50))[:-30])
  with pytest.raises(errors.InputError, match=re.escape(str(tmp_path / 'cut.jsonl.gz')) + r':\d+: cannot decompress'):
    datasets.prepare(_config(tmp_path, tmp_path / 'cut.jsonl.gz'))
  pq.write_table(pa.table({'body': DOCS}), tmp_path / 'p.parquet')
  with pytest.raises(errors.InputError, match=r"p\.parquet: no column 'text' \(data\.text_key\); it has \['body'\]"):
    datasets.prepare(_config(tmp_path, tmp_path / 'p.parquet'))
  pq.write_table(pa.table({'text': [1, 2]}), tmp_path / 'n.parquet')
  with pytest.raises(errors.InputError, match=r"n\.parquet: column 'text' \(data\.text_key\) holds int64, not text"):
    datasets.prepare(_config(tmp_path, tmp_path / 'n.parquet'))


def test_skip_bad_records_skips_counts_and_stops_at_one_more(tmp_path, monkeypatch, capsys):
  monkeypatch.setattr(local, '_CHUNK_RECORDS', 2)
  lines = [b'{"text": "d1"}', b'bad', b'{"text": "d2"}', b'{"text": "d3"}', b'{"no": 1}', b'{"text": "d4"}',
           b'{"text": 7}', b'{"text": "d5"}']
  path = tmp_path / 'c.jsonl'
  path.write_bytes(b'\n'.join(lines) + b'\n')
  (tmp_path / 'a-valid.txt').write_text('held out\n')  # Named by split; converted before c.jsonl.
  # Two allowed: the third (line 7) stops the conversion, which a larger allowance then continues.
  config = _config(tmp_path, tmp_path / '*.*', skip_bad_records=2)
  with pytest.raises(errors.InputError, match=re.escape(f'{path}:7: ') + r".*malformed record 3, one more than "
                     r'data\.skip_bad_records=2'):
    datasets.prepare(config)
  assert not datasets.make_builder(config).is_prepared()
  calls = _count_reads(monkeypatch)
  config.skip_bad_records = 3
  assert datasets.split_texts(config, 'train') == ['d1', 'd2', 'd3', 'd4', 'd5']
  assert calls == [('c.jsonl', 6)]  # After the last finished chunk (d4, line 6).
  printed = capsys.readouterr().out
  assert "data.name='local' skipped 3 malformed records (data.skip_bad_records=3" in printed
  assert f'{path}:2: not valid JSON' in printed
  skipped = datasets.prepare(config).info.metadata['skipped_records']
  assert [location for location, _ in skipped] == [f'{path}:2', f'{path}:5', f'{path}:7']
  # The dataset converted with 3 skipped holds a run that allows fewer to its value, without converting again.
  monkeypatch.setattr(sources, 'read_records', lambda *args: pytest.fail('a source was read again'))
  config.skip_bad_records = 1
  with pytest.raises(errors.InputError, match=re.escape(f'{path}:5: ') + r'.*one more than data\.skip_bad_records=1'):
    datasets.prepare(config)


def _memory_kb(field: str) -> int:
  with open('/proc/self/status') as f:
    return next(int(line.split()[1]) for line in f if line.startswith(field + ':'))


def test_a_200k_document_jsonl_converts_then_streams_through_in_seconds(tmp_path, monkeypatch):
  # 24 MB of short documents. Chunks of 10k records bound what the conversion holds: it must stay under half the
  # corpus (measured 9 MB on an Intel Xeon with these chunks; the README's 21 MB is with the default 64k records;
  # the texts alone as Python strings take ~40 MB).
  monkeypatch.setattr(local, '_CHUNK_RECORDS', 10_000)
  path = tmp_path / 'big.jsonl'
  with open(path, 'w') as f:
    for i in range(200_000):
      f.write(json.dumps({'text': f'document {i}: ' + 'lorem ipsum ' * (i % 16)}) + '\n')
  config = _config(tmp_path, path, validation_fraction=0.01)
  with open('/proc/self/clear_refs', 'w') as f:
    f.write('5')  # Resets the peak resident size (VmHWM) to the current one.
  before, start = _memory_kb('VmRSS'), time.perf_counter()
  builder = datasets.prepare(config)
  seconds, growth_kb = time.perf_counter() - start, _memory_kb('VmHWM') - before
  assert seconds < 15, seconds  # 2.9 s on an Intel Xeon.
  assert growth_kb * 1024 < os.path.getsize(path) / 2, growth_kb
  assert sum(builder.info.splits[s].num_examples for s in ('train', 'validation')) == 200_000
  assert builder.info.splits['train'].num_shards == 20  # One per chunk.
  # Then it streams through (data.streaming): one pass over every train record, each tokenized as it is read,
  # counts each of its bytes (byte tokens, and an eos per document), and a streamed run's first batch comes
  # without a read of the whole split.
  config.update(tokenizer='byte', streaming=True, pack=True)
  tokenizer, train = tokenizers.ByteTokenizer(), builder.info.splits['train'].num_examples
  start = time.perf_counter()
  counted = stats.streamed_split_stats(config, tokenizer, 'train')
  assert counted.examples == train and counted.source_tokens == counted.bytes + train > 20e6
  first = next(pipeline.make_train_iterator(config, tokenizer, batch_size=8, seed=0))
  assert first['decoder_loss_weights'].sum() > 0 and time.perf_counter() - start < 60  # 11 s on an Intel Xeon.


def test_paths_are_resolved_and_checked(tmp_path):
  (tmp_path / 'tfds').mkdir()
  (tmp_path / 'tfds' / 'x.jsonl').write_text('')  # The data dir's files are no corpus.
  (tmp_path / '.cache').mkdir()
  (tmp_path / '.cache' / 'y.jsonl').write_text('')  # Hidden.
  (tmp_path / 'dataset_infos.json').write_text('{}')  # Plain .json: metadata, in a directory.
  (tmp_path / 'a.jsonl').write_text('')
  (tmp_path / 'notes.md').write_text('')
  assert sources.resolve_files(str(tmp_path), exclude=str(tmp_path / 'tfds')) == [str(tmp_path / 'a.jsonl')]
  assert sources.resolve_files(str(tmp_path / '*.json*')) == [str(tmp_path / f) for f in ('a.jsonl',
                                                                                           'dataset_infos.json')]
  with pytest.raises(errors.InputError, match=r"matches files of no supported kind.*notes\.md"):
    sources.resolve_files(str(tmp_path / '*'))
  with pytest.raises(errors.InputError, match=r'notes\.md.* is of no supported kind'):
    sources.resolve_files(str(tmp_path / 'notes.md'))
  (tmp_path / 'docs').mkdir()
  (tmp_path / 'docs' / 'notes.md').write_text('')
  with pytest.raises(errors.MissingError, match=r'directory .*docs.* holds no \*\.txt'):
    sources.resolve_files(str(tmp_path / 'docs'))
  with pytest.raises(errors.MissingError, match=r'does not exist'):
    sources.resolve_files(str(tmp_path / 'absent.jsonl'))
  assert sources.file_kind('x.parquet.gz') is None and sources.file_kind('X.JSONL.ZST') == ('json', '.zst')


@pytest.mark.parametrize('key, value, message', [
    ('validation_fraction', 1.0, r'data\.validation_fraction=1\.0 must be in \[0, 1\)'),
    ('test_fraction', -0.1, r'data\.test_fraction=-0\.1 must be in \[0, 1\)'),
    ('test_fraction', 0.9, r'data\.test_fraction=0\.9 leaves no record to train on'),
    ('skip_bad_records', -1, r'data\.skip_bad_records=-1 must be an integer >= 0'),
])
def test_held_out_and_skip_values_are_checked(tmp_path, key, value, message):
  c = base.get_config()
  c.data.update(name='local', path=str(tmp_path))
  c.data[key] = value
  with pytest.raises(errors.InputError, match=message):
    config_lib.validate(c)
  with pytest.raises(errors.InputError, match=message):  # Also for a data config built by hand.
    datasets.make_builder(c.data)


def test_tfds_reads_the_converted_dataset_as_any_other(tmp_path):
  (tmp_path / 'c.jsonl').write_bytes(_jsonl(DOCS))
  _held_out_file(tmp_path)
  builder = datasets.prepare(_config(tmp_path, tmp_path))
  again = tfds.builder_from_directory(builder.data_dir)  # Only the files, not our builder class.
  assert [r['text'].decode() for r in again.as_data_source(split='train')] == DOCS
  assert again.info.metadata['files'] == ['c.jsonl', 'valid.txt']
  assert again.info.metadata['splits'] == 'by file name; test repeats validation'


def test_a_glob_names_files_from_its_fixed_folder_so_a_new_subfolder_moves_no_record(tmp_path):
  corpus = tmp_path / 'c'
  (corpus / 'a').mkdir(parents=True)
  (corpus / 'a' / 'x.jsonl').write_bytes(_jsonl([f'x{i}' for i in range(600)]))
  pattern = str(corpus / '**' / '*.jsonl')
  before = _held_out(_config(tmp_path / 'before', pattern, validation_fraction=0.2))
  assert all(title.startswith('a/x.jsonl:') for split in before.values() for title in split)
  (corpus / 'b').mkdir()
  (corpus / 'b' / 'y.jsonl').write_bytes(_jsonl(['y0', 'y1']))
  after = _held_out(_config(tmp_path / 'after', pattern, validation_fraction=0.2))
  assert {split: {t for t in after[split] if t.startswith('a/')} for split in after} == before


def test_a_byte_order_mark_is_no_part_of_the_first_record(tmp_path):
  path = tmp_path / 'bom.jsonl'
  path.write_bytes(b'\xef\xbb\xbf' + _jsonl(DOCS))
  assert [text for _, text, _ in sources.read_records(str(path), 'text')] == DOCS
  path = tmp_path / 'bom.txt'
  path.write_bytes(b'\xef\xbb\xbfhello\nworld\n')
  assert [text for _, text, _ in sources.read_records(str(path), 'text')] == ['hello', 'world']


def test_a_damaged_parquet_file_is_named(tmp_path):
  path = tmp_path / 'bad.parquet'
  path.write_bytes(b'PAR1garbage')
  with pytest.raises(errors.InputError, match=r'bad.parquet: cannot read it as parquet'):
    list(sources.read_records(str(path), 'text'))
