"""Tokenizer cache: the run's copy in the workdir wins and must match; SentencePiece trains once per dataset."""

import json
import pathlib

from conftest import data_config
import numpy as np
import pytest
import test_tokenizers
from test_tokenizers import SPM_VOCAB_SIZE

from lm import tokenizers
from lm.data import datasets
from lm.data import pipeline
from lm.data import tokenizer_cache


def _data_config(**overrides):
  return data_config(**{'name': 'text_files', **overrides})


def _corpus(num_lines: int = 300) -> str:
  """test_tokenizers' corpus as one text."""
  return ''.join(test_tokenizers.corpus(num_lines))


def test_tokenizer_is_saved_in_the_workdir_and_reused(tmp_path):
  letters = np.random.default_rng(0).choice(list('abcdefghij \n'), 1000)
  (tmp_path / 'corpus.txt').write_text(''.join(letters))
  config = _data_config(path=str(tmp_path / 'corpus.txt'), data_dir=str(tmp_path / 'tfds'))
  run = tmp_path / 'run'
  built = tokenizer_cache.get_tokenizer(config, str(run))
  assert (run / 'tokenizer' / 'tokenizer.json').exists()
  # The saved vocabulary wins over the data: a resumed run keeps its ids.
  (run / 'tokenizer' / 'tokenizer.json').write_text('{"kind": "char", "chars": "xyz"}')
  assert tokenizer_cache.get_tokenizer(config, str(run)).vocab_size == 5
  assert built.vocab_size == 2 + 12  # pad, eos and the 12 corpus characters.
  config.tokenizer = 'byte'
  with pytest.raises(ValueError, match=r"data.tokenizer='byte' but .* holds a 'char' tokenizer"):
    tokenizer_cache.get_tokenizer(config, str(run))


def _spm_config(tmp_path):
  """A small text_files corpus in tmp_path and config.data training a BPE SentencePiece model on it."""
  corpus = tmp_path / 'corpus.txt'
  corpus.write_text(_corpus(), encoding='utf-8')
  return _data_config(path=str(corpus), data_dir=str(tmp_path / 'tfds'), tokenizer='sentencepiece',
                      spm_vocab_size=SPM_VOCAB_SIZE, spm_model_type='bpe')


def test_pipeline_trains_spm_on_train_only_and_caches_it_with_the_dataset(tmp_path, monkeypatch):
  config = _spm_config(tmp_path)
  calls = []
  make_tokenizer = tokenizers.make_tokenizer

  def counting_make_tokenizer(kind, texts, **options):
    calls.append(list(texts))
    return make_tokenizer(kind, calls[-1], **options)

  monkeypatch.setattr(tokenizers, 'make_tokenizer', counting_make_tokenizer)
  built = tokenizer_cache.get_tokenizer(config, str(tmp_path / 'run1'))
  assert calls == [datasets.split_texts(config, 'train')]
  assert built.to_dict()['model_type'] == 'bpe'
  cache = pathlib.Path(datasets.make_builder(config).data_dir) / 'tokenizers' / f'spm_bpe_{SPM_VOCAB_SIZE}'
  assert (cache / 'spm.model').exists()
  assert (tmp_path / 'run1' / 'tokenizer' / 'spm.model').exists()
  # The sample is recorded with the model, and with the run's copy: here the whole (small) split.
  sample = json.loads((cache / 'sample.json').read_text())
  num_records = len(datasets.load_split(config, 'train'))
  assert (sample['records'], sample['sampled'], sample['whole_split']) == (num_records, num_records, True)
  assert sample['model_sha256'] == built.to_dict()['model_sha256']
  assert json.loads((tmp_path / 'run1' / 'tokenizer' / 'sample.json').read_text()) == sample

  # A new run (another workdir, or none) reuses the cached model, and its record.
  for workdir in [str(tmp_path / 'run2'), None]:
    reused = tokenizer_cache.get_tokenizer(config, workdir)
    assert len(calls) == 1
    assert reused.to_dict() == built.to_dict()
  assert json.loads((tmp_path / 'run2' / 'tokenizer' / 'sample.json').read_text()) == sample
  # The run's own copy wins, and must match the config.
  assert tokenizer_cache.get_tokenizer(config, str(tmp_path / 'run1')).to_dict() == built.to_dict()
  config.spm_vocab_size = SPM_VOCAB_SIZE - 10
  with pytest.raises(ValueError, match=r'data.spm_vocab_size=490 but .* with spm_vocab_size 500'):
    tokenizer_cache.get_tokenizer(config, str(tmp_path / 'run1'))
  config.spm_vocab_size, config.spm_model_type = SPM_VOCAB_SIZE, 'unigram'
  with pytest.raises(ValueError, match=r"data.spm_model_type='unigram' but .* with spm_model_type 'bpe'"):
    tokenizer_cache.get_tokenizer(config, str(tmp_path / 'run1'))
  # Other settings train their own model beside the first.
  config.spm_vocab_size, config.spm_model_type = SPM_VOCAB_SIZE - 10, 'bpe'
  assert tokenizer_cache.get_tokenizer(config, None).vocab_size == SPM_VOCAB_SIZE - 10
  assert len(calls) == 2
  assert (cache.parent / f'spm_bpe_{SPM_VOCAB_SIZE - 10}').is_dir()


def test_catalogue_seq2seq_tokenizer_reads_the_input_and_target_keys(
    monkeypatch):
  records = [{'article': 'Long article.', 'highlights': 'Short!'}]
  monkeypatch.setattr(datasets, 'load_split', lambda config, split: records)
  config = _data_config(name='cnn_dailymail', task='seq2seq',
                        **datasets.catalogue_features('cnn_dailymail'))
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  assert tokenizer.chars == ''.join(sorted(set('Long article.Short!')))


def test_prefix_is_in_the_vocabulary_and_the_tokenizer_texts(tmp_path,
                                                             monkeypatch):
  config = _data_config(name='copy', task='seq2seq', prefix='copy: ',
                        data_dir=str(tmp_path / 'tfds'), synthetic_length=5,
                        synthetic_examples=100, max_input_len=16,
                        max_target_len=8)
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  batch = next(pipeline.make_train_iterator(config, tokenizer, batch_size=2,
                                            seed=0))
  assert tokenizer.decode(batch['encoder_input_tokens'][0]).startswith('copy: ')
  # SentencePiece trains on what the pipeline encodes: prefixed inputs.
  texts = []

  def recording_make_tokenizer(kind, train_texts, **options):
    texts.extend(train_texts)
    return tokenizers.ByteTokenizer()

  monkeypatch.setattr(tokenizers, 'make_tokenizer', recording_make_tokenizer)
  spm_config = _data_config(**{**config.to_dict(), 'tokenizer': 'sentencepiece'})
  tokenizer_cache.get_tokenizer(spm_config, None)
  pairs = datasets.split_pairs(config, 'train')
  assert texts == [t for i, o in pairs for t in ('copy: ' + i, o)]


def test_split_identifiers_reach_the_tokenizer_texts(monkeypatch):
  records = [{'question': b'get_value', 'answer': b'Get the value.'}]
  monkeypatch.setattr(datasets, 'load_split', lambda c, split: records)
  config = _data_config(name='fake', task='seq2seq', input_key='question', target_key='answer', prefix='rev: ',
                        split_identifiers=True)
  assert tokenizer_cache.tokenizer_texts(config, 'train') == ['rev: get value',
                                                              'Get the value.']


def test_split_identifiers_reach_the_tokenizer_texts_of_documents(monkeypatch):
  records = [{'text': b'def get_value(key)'}]
  monkeypatch.setattr(datasets, 'load_split', lambda c, split: records)
  config = _data_config(task='span_corruption', split_identifiers=True, pack=True)
  assert tokenizer_cache.tokenizer_texts(config, 'train') == ['def get value(key)']


def test_a_cached_model_without_todays_sample_record_is_trained_again(tmp_path, monkeypatch):
  """A model cached before samples were recorded (or under another budget or seed) is not reused unrecorded."""
  config = _spm_config(tmp_path)
  calls = []
  sample = tokenizer_cache.sentencepiece_sample
  monkeypatch.setattr(tokenizer_cache, 'sentencepiece_sample', lambda *a, **k: calls.append(1) or sample(*a, **k))
  tokenizer_cache.get_tokenizer(config)
  tokenizer_cache.get_tokenizer(config)
  assert len(calls) == 1  # Cached with its record: reused.
  (record,) = (tmp_path / 'tfds').rglob(tokenizer_cache.SAMPLE_FILENAME)
  record.unlink()  # As a cache made before samples were recorded.
  tokenizer_cache.get_tokenizer(config)
  assert len(calls) == 2 and record.exists()
  record.write_text(record.read_text().replace('"seed": 0', '"seed": 7'))  # Drawn under another seed.
  tokenizer_cache.get_tokenizer(config)
  assert len(calls) == 3
