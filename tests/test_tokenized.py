"""Tokenized splits: documents as the model reads them, read once per process; seq2seq pairs behind the prefix."""


import ml_collections
import numpy as np

from experiments import base
from lm import tokenizers
from lm.data import datasets
from lm.data import rows
from lm.data import tokenized
from lm.data import tokenizer_cache


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = base.get_config().data.to_dict()  # every key the data package reads.
  config.update(name='text_files', tokenizer='char', seq_len=16, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


class _SentinelTokenizer(tokenizers.CharTokenizer):
  """A char tokenizer with T5-style sentinels: descending ids above the vocab."""

  def sentinel_id(self, i: int) -> int:
    return 1000 - i


def test_stream_ends_each_document_with_eos(tmp_path):
  corpus = tmp_path / 'docs'
  corpus.mkdir()
  for name, text in [('a.txt', 'abc'), ('b.txt', 'de')]:
    (corpus / name).write_text(text)
  config = _data_config(path=str(corpus), data_dir=str(tmp_path / 'tfds'))
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  documents = tokenized.tokenize_split(config, tokenizer, 'train').documents
  stream = rows.token_stream(documents, tokenizer.eos_id)
  np.testing.assert_array_equal(stream, [*tokenizer.encode('abc'), 1])


def test_documents_are_read_once_per_process_with_their_bytes(tmp_path, monkeypatch):
  texts = ['héllo wörld', '', 'plain']
  reads = []
  monkeypatch.setattr(datasets, 'split_texts', lambda config, split: reads.append(split) or texts)
  (tmp_path / 'a.txt').write_text('names the dataset; its texts are the ones above')
  config = _data_config(path=str(tmp_path / 'a.txt'), data_dir=str(tmp_path / 'tfds'))
  tokenizer = tokenizers.CharTokenizer(''.join(texts))
  first = tokenized.tokenize_split(config, tokenizer, 'validation')
  again = tokenized.tokenize_split(config, tokenizer, 'validation')
  assert reads == ['validation'] and again is first  # eval passes reuse the ids.
  assert [tokenizer.decode(doc) for doc in first.documents] == texts
  assert all(doc.dtype == np.int32 for doc in first.documents) and first.pairs == []
  assert first.bytes == len('héllo wörld'.encode('utf-8')) + len('plain') == 18


def test_pairs_are_the_prefixed_model_inputs_and_the_targets(monkeypatch):
  records = [{'question': b'get_value', 'answer': b'Get the value.'}, {'question': b'x', 'answer': b'y'}]
  monkeypatch.setattr(datasets, 'load_split', lambda config, split: records)
  config = _data_config(name='fake', task='seq2seq', input_key='question', target_key='answer',
                        prefix='rev: ', split_identifiers=True)
  tokenizer = tokenizers.ByteTokenizer()
  split = tokenized.tokenize_split(config, tokenizer, 'train')
  assert [(tokenizer.decode(i), tokenizer.decode(t)) for i, t in split.pairs] == [
      ('rev: get value', 'Get the value.'), ('rev: x', 'y')]
  assert split.documents == []
  assert split.bytes == len('rev: get_valueGet the value.') + len('rev: xy')  # the stored texts.


def test_split_identifiers_reach_span_corruption_documents(tmp_path, monkeypatch):
  records = [{'text': b'def get_value(key)'}]
  monkeypatch.setattr(datasets, 'load_split', lambda c, split: records)
  (tmp_path / 'a.txt').write_text('names the dataset; its record is the one above')
  config = _data_config(path=str(tmp_path / 'a.txt'), data_dir=str(tmp_path / 'tfds'), task='span_corruption',
                        split_identifiers=True, pack=True)
  tokenizer = _SentinelTokenizer('def get value(key)')  # No '_': raw fails.
  doc, = tokenized.tokenize_split(config, tokenizer, 'train').documents
  assert tokenizer.decode(doc) == 'def get value(key)'
