"""SentencePiece's training sample: seeded, bounded by lines and characters, read by index, the whole of a small
split. (That the sample is recorded beside the model and in the run: test_tokenizer_cache.)"""

import hashlib

from conftest import data_config
import numpy as np
import pytest

from lm.data import datasets
from lm.data import tokenizer_cache


class _CountingSource:
  """A random-access split of `records` that counts the records read, as a TFDS data source reads them."""

  def __init__(self, records, batched: bool):
    self.records, self.reads = records, 0
    if batched:
      self.__getitems__ = lambda indices: [self[i] for i in indices]

  def __len__(self):
    return len(self.records)

  def __getitem__(self, i):
    self.reads += 1
    return self.records[i]


def _split(monkeypatch, texts, batched=True) -> _CountingSource:
  source = _CountingSource([{'text': text.encode('utf-8')} for text in texts], batched)
  monkeypatch.setattr(datasets, 'load_split', lambda config, split: source)
  return source


def _config(**overrides):
  return data_config(**{'name': 'text_files', 'tokenizer': 'sentencepiece', **overrides})


def _doc(i: int) -> str:
  return f'doc {i} one\ndoc {i} two\n\ndoc {i} three'  # Three lines: the blank one is not counted.


# 1000 records take the permutation, 10000 (over 4x the 100 the budget needs) the draws that skip repeats.
@pytest.mark.parametrize('num_records', [1000, 10_000])
@pytest.mark.parametrize('batched', [True, False])
def test_a_large_split_reads_a_seeded_sample_within_the_line_budget(monkeypatch, num_records, batched):
  monkeypatch.setattr(tokenizer_cache, '_SAMPLE_LINES', 300)
  docs = [_doc(i) for i in range(num_records)]
  source = _split(monkeypatch, docs, batched)
  texts, sample = tokenizer_cache.sentencepiece_sample(_config())
  assert sample['sampled'] == 100 and sample['lines'] == 300 and sample['records'] == num_records
  assert not sample['whole_split']
  # Only what the budget needs is read: the 100 records, and at most the rest of their chunk.
  assert source.reads <= 100 + tokenizer_cache._READ_CHUNK < num_records // 2
  indices = [int(text.split()[1]) for text in texts]
  assert texts == [docs[i] for i in indices] and indices == sorted(set(indices))  # Whole records, in order.
  assert indices != list(range(100))  # Drawn at random, not the first records.
  assert sample['indices_sha256'] == hashlib.sha256(np.asarray(indices, '<i8').tobytes()).hexdigest()
  # The same seed and data draw the same sample; another seed another.
  assert tokenizer_cache.sentencepiece_sample(_config()) == (texts, sample)
  other_texts, other = tokenizer_cache.sentencepiece_sample(_config(), seed=1)
  assert other['indices_sha256'] != sample['indices_sha256'] and other_texts != texts


def test_the_character_cap_stops_a_split_of_long_lines(monkeypatch):
  monkeypatch.setattr(tokenizer_cache, '_SAMPLE_CHARS', 10_000)
  source = _split(monkeypatch, [f'{i:04d}' + 'x' * 996 for i in range(2000)])  # One 1000-character line each.
  texts, sample = tokenizer_cache.sentencepiece_sample(_config())
  assert (sample['sampled'], sample['lines'], sample['chars']) == (10, 10, 10_000) and len(texts) == 10
  assert source.reads <= 10 + tokenizer_cache._READ_CHUNK


def test_a_small_split_trains_on_every_record_in_order(monkeypatch):
  docs = [_doc(i) for i in range(50)]
  source = _split(monkeypatch, docs)
  texts, sample = tokenizer_cache.sentencepiece_sample(_config(prefix='lm: '))
  assert texts == docs + ['lm: ']  # As tokenizer_texts gives them: the prefix is one more text.
  assert source.reads == 50
  assert sample['whole_split'] and sample['sampled'] == sample['records'] == 50
  assert (sample['lines'], sample['seed']) == (150 + 1, tokenizer_cache._SAMPLE_SEED)
  assert sample['indices_sha256'] == hashlib.sha256(np.arange(50, dtype='<i8').tobytes()).hexdigest()


def test_seq2seq_samples_prefixed_inputs_and_targets(monkeypatch):
  records = [{'question': f'q_{i}'.encode(), 'answer': f'a {i}'.encode()} for i in range(3)]
  monkeypatch.setattr(datasets, 'load_split', lambda config, split: records)
  config = _config(name='fake', task='seq2seq', input_key='question', target_key='answer', prefix='ask: ',
                   split_identifiers=True)
  texts, sample = tokenizer_cache.sentencepiece_sample(config)
  assert texts == [t for i in range(3) for t in (f'ask: q {i}', f'a {i}')]
  assert texts == tokenizer_cache.tokenizer_texts(config, 'train') and sample['whole_split']

