"""Stats: token accounting agrees with the rows the pipeline makes, and the train iterator's needs no second read."""

from conftest import data_config
from conftest import s2s_records
import numpy as np
import pytest

from lm import tokenizers
from lm.data import datasets
from lm.data import pipeline
from lm.data import rows
from lm.data import stats as stats_lib
from lm.data import tokenized
from lm.data import tokenizer_cache

SEQ_LEN = 16
BATCH = 4


def _assert_conserved(stats):
  assert (stats.input_tokens + stats.target_tokens + stats.truncated_tokens
          == stats.source_tokens)


# ---------------------------------------------------------------- language modelling


def _docs_with_eos(config, tokenizer, split):
  return [np.append(tokenizer.encode(text), tokenizer.eos_id)
          for text in datasets.split_texts(config, split)]


def test_packed_stats_count_the_targets_of_one_epoch(lm_config, lm_tokenizer):
  docs = _docs_with_eos(lm_config, lm_tokenizer, 'train')
  batches = list(pipeline.make_train_iterator(
      lm_config, lm_tokenizer, batch_size=BATCH, seed=1, num_epochs=1))
  stats = stats_lib.split_stats(lm_config, lm_tokenizer, 'train')
  weights = sum(b['decoder_loss_weights'].sum() for b in batches)
  assert weights == stats.target_tokens == sum(len(d) - 1 for d in docs)
  assert stats.source_tokens == sum(map(len, docs))
  _assert_conserved(stats)
  assert stats.examples == len(docs) and stats.dropped_examples == 0
  assert stats.bytes == sum(len(t.encode('utf-8')) for t in datasets.split_texts(lm_config, 'train'))


class _BosChars(tokenizers.CharTokenizer):
  """A char tokenizer whose documents open with a bos, as an imported Llama tokenizer's do."""
  starts_with_bos, bos_id = True, 99


@pytest.mark.parametrize('pack', [False, True])
def test_stats_count_the_bos_a_document_opens_with(lm_config, pack):
  """One train epoch's targets, as the rows weigh them, the whole-split count and the streamed count agree when
  each document is framed by a bos before it (tokenizers.document_start) and eos after it."""
  config = lm_config.copy_and_resolve_references()
  config.pack = pack
  tokenizer = _BosChars('abcdefgh')
  batches = list(pipeline.make_train_iterator(config, tokenizer, batch_size=BATCH, seed=1, num_epochs=1))
  weights = sum(int(b['decoder_loss_weights'].sum()) for b in batches)
  stats = stats_lib.split_stats(config, tokenizer, 'train')
  assert stats == stats_lib.streamed_split_stats(config, tokenizer, 'train')
  docs = _docs_with_eos(config, tokenizer, 'train')
  assert stats.source_tokens == sum(len(d) + 1 for d in docs) and weights == stats.target_tokens
  _assert_conserved(stats)


def test_packed_eval_stats_are_the_eval_weights(lm_config, lm_tokenizer):
  batches = list(pipeline.make_eval_batches(lm_config, lm_tokenizer, 'validation', batch_size=3))
  stats = stats_lib.split_stats(lm_config, lm_tokenizer, 'validation')
  assert sum(b['decoder_loss_weights'].sum() for b in batches) == stats.target_tokens


def test_concat_stats_count_the_dropped_partial_row(tmp_path):
  (tmp_path / 'a.txt').write_text('abcdefghij' * 10)
  config = data_config(name='text_files', path=str(tmp_path / 'a.txt'),
                        data_dir=str(tmp_path / 'tfds'), pack=False)
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  documents = tokenized.tokenize_split(config, tokenizer, 'train').documents
  stream = rows.token_stream(documents, tokenizer.eos_id)
  stats = stats_lib.split_stats(config, tokenizer, 'train')
  full_rows = (len(stream) - 1) // SEQ_LEN
  assert stats.target_tokens == full_rows * SEQ_LEN
  assert stats.truncated_tokens == len(stream) - 1 - full_rows * SEQ_LEN > 0
  assert stats_lib.split_stats(config, tokenizer, 'train',
                               train=False).truncated_tokens == 0


# ---------------------------------------------------------------- seq2seq


def test_seq2seq_stats_count_the_truncated_tokens(s2s):
  config, tokenizer = s2s
  records = s2s_records('validation')
  (batch,) = pipeline.make_eval_batches(config, tokenizer, 'validation', batch_size=len(records))
  truncated = 0
  for record in records:
    enc = [*tokenizer.encode('rev: ' + record['question'].decode()), tokenizer.eos_id]
    dec = [*tokenizer.encode(record['answer'].decode()), tokenizer.eos_id]
    truncated += max(len(enc) - 12, 0) + max(len(dec) - 8, 0)
  assert truncated > 0  # the data does exercise truncation.
  stats = stats_lib.split_stats(config, tokenizer, 'validation')
  assert stats.truncated_tokens == truncated
  assert stats.target_tokens == batch['decoder_loss_weights'].sum()
  assert stats.input_tokens == (batch['encoder_segment_ids'] > 0).sum()
  _assert_conserved(stats)
  assert stats.examples == len(records)
  assert stats.bytes == sum(len('rev: ') + len(r['question']) + len(r['answer']) for r in records)


def test_seq2seq_stats_read_catalogue_feature_keys(squad):
  """squad's input template joins two features (T5's format); its target reads a list inside a dict."""
  records, config, tokenizer = squad
  (batch,) = pipeline.make_eval_batches(config, tokenizer, 'validation', batch_size=len(records))
  stats = stats_lib.split_stats(config, tokenizer, 'validation')
  assert stats.target_tokens == batch['decoder_loss_weights'].sum()


def test_train_iterator_counts_its_split_without_reading_it_again(s2s, monkeypatch):
  """The stats training logs come from the ids the iterator tokenized: one read, one encoding of each text."""
  config, tokenizer = s2s
  reads, encodes = [], []
  monkeypatch.setattr(datasets, 'load_split', lambda c, split: reads.append(split) or s2s_records(split))
  encode = tokenizer.encode
  monkeypatch.setattr(tokenizer, 'encode', lambda text: encodes.append(text) or encode(text))
  iterator = pipeline.make_train_iterator(config, tokenizer, batch_size=BATCH, seed=0)
  next(iterator)
  assert reads == ['train'] and len(encodes) == 2 * len(s2s_records('train'))
  assert iterator.stats == stats_lib.split_stats(config, tokenizer, 'train')  # which reads it again.
  assert iterator.stats.target_tokens > 0 and reads == ['train', 'train']


# ---------------------------------------------------------------- span corruption


class _SentinelTokenizer(tokenizers.CharTokenizer):
  """A char tokenizer with T5-style sentinels: descending ids above the vocab."""

  def sentinel_id(self, i: int) -> int:
    return 1000 - i


def test_span_corruption_stats_are_the_rows_counts(lm_corpus):
  config = data_config(name='text_files', path=str(lm_corpus),
                        data_dir=str(lm_corpus / 'tfds'), task='span_corruption',
                        max_input_len=20, max_target_len=10, pack=True)
  tokenizer = _SentinelTokenizer('abcdefgh')
  batches = list(pipeline.make_eval_batches(config, tokenizer, 'train', batch_size=BATCH))
  stats = stats_lib.split_stats(config, tokenizer, 'train')
  assert stats.truncated_tokens == 0
  assert stats.target_tokens == sum(b['decoder_loss_weights'].sum() for b in batches)
  assert stats.input_tokens == sum((b['encoder_segment_ids'] > 0).sum() for b in batches)
  _assert_conserved(stats)


# ---------------------------------------------------------------- a streamed count


@pytest.mark.parametrize('task, pack, num_workers', [('lm', False, 2), ('lm', True, 0), ('span_corruption', True, 0)])
def test_a_count_from_streamed_token_counts_is_the_count_of_the_tokenized_split(lm_corpus, task, pack, num_workers):
  """`./run.sh data --full` on a streamed dataset: the counts of one pass keeping token counts only, here and in
  worker processes, are those of the split read and tokenized whole, in each mode."""
  config = data_config(name='text_files', path=str(lm_corpus), data_dir=str(lm_corpus / 'tfds'), task=task,
                       pack=pack, max_input_len=20, max_target_len=10)
  tokenizer = _SentinelTokenizer('abcdefgh')
  for split in ('train', 'validation'):
    want = stats_lib.split_stats(config, tokenizer, split)
    # Concat's partial train row dropped: a count that can go wrong.
    assert want.truncated_tokens > 0 or split != 'train' or task != 'lm' or pack
    assert stats_lib.streamed_split_stats(config, tokenizer, split, num_workers=num_workers) == want, split


def test_a_streamed_seq2seq_count_is_the_count_of_the_tokenized_pairs(s2s):
  config, tokenizer = s2s
  want = stats_lib.split_stats(config, tokenizer, 'validation')
  assert want.truncated_tokens > 0 and want.bytes > 0
  assert stats_lib.streamed_split_stats(config, tokenizer, 'validation') == want
