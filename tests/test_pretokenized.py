"""Pretokenized splits (lm/data/pretokenized.py): the same batches as encoding at start, read from the token file,
keyed by the tokenizer, resumable, and written by worker processes."""
import json
import os
import pickle
import subprocess
import sys

from conftest import data_config
import numpy as np
import pytest

from lm import errors
from lm import tokenizers
from lm.data import pipeline
from lm.data import pretokenized
from lm.data import stats as stats_lib
from lm.data import tokenized

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture
def corpus(tmp_path):
  """A local jsonl corpus of 300 documents of 0..60 letters (empty ones too), 10% held out."""
  rng = np.random.default_rng(0)
  with open(tmp_path / 'docs.jsonl', 'w') as f:
    for i in range(300):
      f.write(json.dumps({'text': ''.join(rng.choice(list('abcdefgh '), i % 61))}) + '\n')
  return tmp_path


def config_of(corpus, **overrides):
  return data_config(name='local', path=str(corpus / 'docs.jsonl'), data_dir=str(corpus / 'tfds'),
                     validation_fraction=0.1, **overrides)


def batches(config, tokenizer, n=12):
  tokenized._DOCUMENTS.clear()  # As a new process: no split kept from an earlier read.
  it = pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=3)
  train = [next(it) for _ in range(n)]
  evals = list(pipeline.make_eval_batches(config, tokenizer, 'validation', batch_size=4))
  return train, evals, it.stats


def assert_same(a, b):
  assert len(a) == len(b)
  for x, y in zip(a, b):
    assert x.keys() == y.keys()
    for name in x:
      np.testing.assert_array_equal(x[name], y[name], err_msg=name)


@pytest.mark.parametrize('task, pack', [('lm', False), ('lm', True)])
def test_a_pretokenized_run_reads_the_batches_of_one_that_encodes(corpus, task, pack):
  config = config_of(corpus, task=task, pack=pack)
  tokenizer = tokenizers.CharTokenizer('abcdefgh ')
  encoded = batches(config, tokenizer)
  for split in ('train', 'validation'):
    pretokenized.pretokenize(config, tokenizer, split, shard_records=64)
  mapped = pretokenized.load(config, tokenizer, 'train')
  assert mapped.manifest['shards'] == 5 and mapped.stream.dtype == np.uint16  # 270 or so records.
  read = batches(config, tokenizer)
  for a, b in zip(encoded[:2], read[:2]):
    assert_same(a, b)
  assert encoded[2] == read[2]  # The token accounting too.
  assert isinstance(tokenized.tokenize_split(config, tokenizer, 'train').stream, pretokenized.TokenFile)


def test_data_pretokenize_tokenizes_at_the_first_read_and_later_reads_the_file(corpus, monkeypatch):
  config = config_of(corpus, pretokenize=True)
  tokenizer = tokenizers.CharTokenizer('abcdefgh ')
  encoded = batches(config_of(corpus), tokenizer)
  assert pretokenized.load(config, tokenizer, 'train') is None
  monkeypatch.setattr(pretokenized, 'SHARD_RECORDS', 64)  # Several shards, so in spawned workers.
  first = batches(config, tokenizer)
  mapped = pretokenized.load(config, tokenizer, 'train')
  assert mapped is not None and mapped.manifest['workers'] >= 1
  assert_same(first[0], encoded[0])
  assert_same(first[1], encoded[1])
  assert encoded[2] == first[2]


def test_the_map_pickles_as_its_path_and_documents_are_views(corpus):
  config = config_of(corpus)
  tokenizer = tokenizers.CharTokenizer('abcdefgh ')
  mapped = pretokenized.pretokenize(config, tokenizer, 'train')
  assert len(pickle.dumps(mapped.stream)) < 500  # A grain worker opens the file itself.
  np.testing.assert_array_equal(pickle.loads(pickle.dumps(mapped.stream))[5:40], mapped.stream[5:40])
  # A process that read tokens exits without "Exception ignored" (its file is closed by a finalizer).
  code = (f'from lm.data import pretokenized; t = pretokenized.TokenFile({mapped.stream.path!r}, "<u2", '
          f'{len(mapped.stream)}); print(t[0:3].tolist())')
  child = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert child.returncode == 0 and child.stdout.strip() == str(mapped.stream[0:3].tolist()), child.stderr
  assert 'Exception' not in child.stderr, child.stderr
  tokenized._DOCUMENTS.clear()
  texts = tokenized.model_texts(config, 'train')
  documents = pretokenized.Documents(mapped.stream, mapped.offsets, 0)
  assert len(documents) == len(texts) and [tokenizer.decode(d) for d in documents] == texts
  ids = tokenized.tokenize_split(config, tokenizer, 'train')
  assert stats_lib.count(config, ids, train=True).bytes == sum(len(t.encode()) for t in texts)


def test_a_changed_tokenizer_finds_no_stale_tokens(corpus):
  config = config_of(corpus)
  first, other = tokenizers.CharTokenizer('abcdefgh '), tokenizers.CharTokenizer('abcdefgh !')  # '!': a's id + 1.
  assert first.encode('a') != other.encode('a')
  pretokenized.pretokenize(config, first, 'train')
  assert pretokenized.load(config, other, 'train') is None
  assert pretokenized.directory(config, first, 'train') != pretokenized.directory(config, other, 'train')
  encoded = batches(config, other)
  pretokenized.pretokenize(config, other, 'train')
  assert_same(batches(config, other)[0], encoded[0])
  # The feature read is part of the key (a catalogue dataset's text_key names which one).
  assert pretokenized.content(config, first, 'train')['text_key'] == 'text'
  assert pretokenized.key(config, first, 'train') != pretokenized.key(config_of(corpus, text_key='body'), first,
                                                                        'train')
  assert pretokenized.token_dtype(1 << 16) == np.uint16 and pretokenized.token_dtype((1 << 16) + 1) == np.int32


class Killed(Exception):
  pass


def test_a_killed_pretokenization_continues_after_its_finished_shards(corpus, monkeypatch):
  config = config_of(corpus)
  tokenizer = tokenizers.CharTokenizer('abcdefgh ')
  done, kill_at = [], [2]
  real = pretokenized._tokenize_shard

  def dies_at_the_third(job):
    if len(done) in kill_at:
      raise Killed  # As a kill: nothing after it runs.
    real(job)
    done.append(job[5])

  monkeypatch.setattr(pretokenized, '_tokenize_shard', dies_at_the_third)
  with pytest.raises(Killed):
    pretokenized.pretokenize(config, tokenizer, 'train', shard_records=50)
  final = pretokenized.directory(config, tokenizer, 'train')
  assert not os.path.exists(final) and pretokenized.load(config, tokenizer, 'train') is None
  assert sorted(f for f in os.listdir(final + '.building') if f.endswith('.json')) == [
      'shard-00000.json', 'shard-00001.json']
  done.clear()
  kill_at.clear()
  mapped = pretokenized.pretokenize(config, tokenizer, 'train', shard_records=50)
  assert done[0] == 2 and len(done) == mapped.manifest['shards'] - 2  # Only the unfinished shards again.
  assert not os.path.exists(final + '.building')
  tokenized._DOCUMENTS.clear()
  texts = tokenized.model_texts(config, 'train')
  assert [tokenizer.decode(d) for d in pretokenized.Documents(mapped.stream, mapped.offsets, 0)] == texts


def test_a_resume_with_other_shard_sizes_tokenizes_the_shards_again(corpus, monkeypatch):
  config = config_of(corpus)
  tokenizer = tokenizers.CharTokenizer('abcdefgh ')
  real, calls = pretokenized._tokenize_shard, []

  def dies_at_the_second(job):
    if len(calls) == 1:
      raise Killed
    real(job)
    calls.append(job)

  monkeypatch.setattr(pretokenized, '_tokenize_shard', dies_at_the_second)
  with pytest.raises(Killed):
    pretokenized.pretokenize(config, tokenizer, 'train', shard_records=100)  # Shard 0 (records 0-99) finished.
  monkeypatch.setattr(pretokenized, '_tokenize_shard', real)
  mapped = pretokenized.pretokenize(config, tokenizer, 'train', shard_records=50)
  tokenized._DOCUMENTS.clear()
  assert [tokenizer.decode(d) for d in pretokenized.Documents(mapped.stream, mapped.offsets, 0)] == (
      tokenized.model_texts(config, 'train'))
  with pytest.raises(errors.InputError, match='shard_records=0: a shard needs at least one record'):
    pretokenized.pretokenize(config, tokenizer, 'train', shard_records=0)


def test_a_truncated_token_file_is_named(corpus):
  config = config_of(corpus)
  tokenizer = tokenizers.CharTokenizer('abcdefgh ')
  mapped = pretokenized.pretokenize(config, tokenizer, 'train')
  with open(mapped.stream.path, 'r+b') as f:
    f.truncate(10)
  with pytest.raises(errors.InputError, match='tokens.bin holds 10 bytes'):
    pretokenized.load(config, tokenizer, 'train')


def test_seq2seq_is_refused_by_name(corpus):
  with pytest.raises(errors.InputError, match='seq2seq pairs are encoded when a run starts'):
    pretokenized.pretokenize(config_of(corpus, task='seq2seq'), tokenizers.ByteTokenizer(), 'train')


def test_the_command_pretokenizes_every_split_in_worker_processes(corpus):
  """`./run.sh pretokenize` over spawned workers (2 shards), then a second call finds it done."""
  flags = [f'--config.data.{k}={v}' for k, v in (('name', 'local'), ('path', corpus / 'docs.jsonl'),
                                                 ('data_dir', corpus / 'tfds'), ('tokenizer', 'byte'),
                                                 ('validation_fraction', 0.1))]
  command = [sys.executable, '-m', 'lm.main', 'pretokenize', *flags, '--workers=2', '--shard_records=150']
  first = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert first.returncode == 0, first.stdout + first.stderr
  assert 'pretokenized train:' in first.stdout and 'pretokenized validation:' in first.stdout, first.stdout
  config = config_of(corpus, tokenizer='byte')
  mapped = pretokenized.load(config, tokenizers.ByteTokenizer(), 'train')
  assert mapped is not None and mapped.manifest['shards'] == 2
  tokenized._DOCUMENTS.clear()
  texts = tokenized.model_texts(config, 'train')
  assert [tokenizers.ByteTokenizer().decode(d) for d in pretokenized.Documents(mapped.stream, mapped.offsets, 0)
          ] == texts
  again = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=300)
  assert again.returncode == 0 and 'already pretokenized' in again.stdout, again.stdout + again.stderr
