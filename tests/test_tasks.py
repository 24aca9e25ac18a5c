"""Tasks: packing invariants, token accounting, span corruption, seq2seq, resume."""


import grain
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import base
from lm import tokenizers
from lm.data import datasets
from lm.data import pipeline
from lm.data import stats as stats_lib
from lm.data import report
from lm.data import tasks
from lm.data import tokenized
from lm.data import tokenizer_cache

SEQ_LEN = 16
BATCH = 4


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = base.get_config().data.to_dict()
  config.update(tokenizer='char', seq_len=SEQ_LEN, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def _stream(config, tokenizer, split: str) -> np.ndarray:
  """The split's concat-and-chunk token stream, as the pipeline reads it."""
  return tasks.token_stream(tokenized.tokenize_split(config, tokenizer, split).documents, tokenizer.eos_id)


def _take(iterator, n: int) -> list[dict]:
  return [next(iterator) for _ in range(n)]


def _assert_same_batches(expected, actual):
  assert len(expected) == len(actual)
  for want, got in zip(expected, actual):
    assert sorted(want) == sorted(got)
    for name in want:
      np.testing.assert_array_equal(want[name], got[name], err_msg=name)


def _segments(row_ids: np.ndarray):
  """(segment id, index array) for each segment of one row."""
  return [(s, np.flatnonzero(row_ids == s)) for s in np.unique(row_ids)
          if s != 0]


# ---------------------------------------------------------------- language modelling


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """20 documents of 1..70 random letters: several shorter and longer than a row."""
  root = tmp_path_factory.mktemp('tasks')
  rng = np.random.default_rng(0)
  for i in range(20):
    n = 1 + (i * 37) % 70
    (root / f'doc{i:02d}.txt').write_text(''.join(rng.choice(list('abcdefgh'),
                                                             n)))
  return root


@pytest.fixture(scope='module')
def lm_config(corpus):
  return _data_config(name='text_files', path=str(corpus),
                      data_dir=str(corpus / 'tfds'), task='lm', pack=True)


@pytest.fixture(scope='module')
def tokenizer(lm_config):
  return tokenizer_cache.get_tokenizer(lm_config, None)


def _docs_with_eos(config, tokenizer, split):
  return [np.append(tokenizer.encode(text), tokenizer.eos_id)
          for text in datasets.split_texts(config, split)]


def test_lm_pieces_share_one_token_and_hold_every_target_once():
  tokens = np.arange(10)
  pieces = tasks.lm_pieces(tokens, 4)
  assert [p.tolist() for p in pieces] == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8],
                                          [8, 9]]
  targets = np.concatenate([tasks.lm_example(p)['decoder_target_tokens']
                            for p in pieces])
  np.testing.assert_array_equal(targets, tokens[1:])
  assert tasks.lm_pieces(np.array([7]), 4) == []  # no target: dropped.


def test_packed_rows_keep_every_target_inside_its_document(lm_config,
                                                           tokenizer):
  docs = [tuple(d) for d in _docs_with_eos(lm_config, tokenizer, 'train')]
  batches = _take(pipeline.make_train_iterator(
      lm_config, tokenizer, batch_size=BATCH, seed=0), 6)
  num_multi_segment_rows = 0
  for batch in batches:
    assert sorted(batch) == sorted(tasks.FEATURES)
    for name, value in batch.items():
      assert value.shape == (BATCH, SEQ_LEN), name
      assert value.dtype == (np.float32 if name == 'decoder_loss_weights'
                             else np.int32), name
    for b in range(BATCH):
      ids = batch['decoder_segment_ids'][b]
      inputs = batch['decoder_input_tokens'][b]
      targets = batch['decoder_target_tokens'][b]
      weights = batch['decoder_loss_weights'][b]
      segments = _segments(ids)
      assert [s for s, _ in segments] == list(range(1, len(segments) + 1))
      num_multi_segment_rows += len(segments) > 1
      padding = ids == 0
      assert (weights[padding] == 0).all() and (inputs[padding] == 0).all()
      assert (targets[padding] == 0).all()
      for _, where in segments:
        assert (np.diff(where) == 1).all()  # contiguous
        np.testing.assert_array_equal(
            batch['decoder_positions'][b][where], np.arange(len(where)))
        assert (weights[where] == 1).all()
        # Within a segment, targets are the inputs shifted by one ...
        np.testing.assert_array_equal(targets[where][:-1], inputs[where][1:])
        # ... and the whole segment is a window of one document.
        window = (inputs[where][0], *targets[where])
        assert any(window == doc[i:i + len(window)] for doc in docs
                   for i in range(len(doc))), window
  assert num_multi_segment_rows > 0  # packing did pack.


def test_one_packed_epoch_holds_every_target_once(lm_config, tokenizer):
  docs = _docs_with_eos(lm_config, tokenizer, 'train')
  batches = list(pipeline.make_train_iterator(
      lm_config, tokenizer, batch_size=BATCH, seed=1, num_epochs=1))
  # Each segment is one piece: its targets, sorted, are the pieces' targets.
  got = sorted(
      tuple(batch['decoder_target_tokens'][b][where])
      for batch in batches for b in range(BATCH)
      for _, where in _segments(batch['decoder_segment_ids'][b]))
  want = sorted(tuple(p[1:]) for doc in docs
                for p in tasks.lm_pieces(doc, SEQ_LEN))
  assert got == want
  stats = stats_lib.split_stats(lm_config, tokenizer, 'train')
  weights = sum(b['decoder_loss_weights'].sum() for b in batches)
  assert weights == stats.target_tokens == sum(len(d) - 1 for d in docs)
  assert stats.source_tokens == sum(map(len, docs))
  assert (stats.input_tokens + stats.target_tokens + stats.truncated_tokens
          == stats.source_tokens)
  assert stats.examples == len(docs) and stats.dropped_examples == 0


def test_concat_stats_count_the_dropped_partial_row(tmp_path):
  (tmp_path / 'a.txt').write_text('abcdefghij' * 10)
  config = _data_config(name='text_files', path=str(tmp_path / 'a.txt'),
                        data_dir=str(tmp_path / 'tfds'), pack=False)
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  stream = _stream(config, tokenizer, 'train')
  stats = stats_lib.split_stats(config, tokenizer, 'train')
  rows = (len(stream) - 1) // SEQ_LEN
  assert stats.target_tokens == rows * SEQ_LEN
  assert stats.truncated_tokens == len(stream) - 1 - rows * SEQ_LEN > 0
  assert stats_lib.split_stats(config, tokenizer, 'train',
                              train=False).truncated_tokens == 0


def test_packing_is_deterministic_per_seed(lm_config, tokenizer):
  def batches(seed):
    return _take(pipeline.make_train_iterator(
        lm_config, tokenizer, batch_size=BATCH, seed=seed), 4)
  first = batches(3)
  _assert_same_batches(first, batches(3))
  assert not all(np.array_equal(a['decoder_input_tokens'],
                                b['decoder_input_tokens'])
                 for a, b in zip(first, batches(4)))


def _assert_resumes_exactly(config, tokenizer, skip, *, seed):
  """After `skip` batches, a fresh iterator set to the saved state yields the next 4 batches exactly."""
  def make():
    return pipeline.make_train_iterator(config, tokenizer, batch_size=BATCH,
                                        seed=seed)
  uninterrupted = _take(make(), skip + 4)
  interrupted = make()
  _take(interrupted, skip)
  resumed = make()
  resumed.set_state(interrupted.get_state())
  _assert_same_batches(uninterrupted[skip:], _take(resumed, 4))


@pytest.mark.parametrize('skip', [1, 5, 13])  # 13 crosses an epoch.
def test_packed_lm_resumes_exactly(lm_config, tokenizer, skip):
  _assert_resumes_exactly(lm_config, tokenizer, skip, seed=0)


def test_packed_lm_resumes_through_an_orbax_checkpoint(lm_config, tokenizer,
                                                       tmp_path):
  def make():
    return pipeline.make_train_iterator(lm_config, tokenizer,
                                        batch_size=BATCH, seed=0)
  uninterrupted = _take(make(), 6)
  iterator = make()
  _take(iterator, 3)
  with ocp.CheckpointManager(tmp_path / 'ckpt') as manager:
    manager.save(3, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
    resumed = make()
    manager.restore(3, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(resumed)))
  _assert_same_batches(uninterrupted[3:], _take(resumed, 3))


def test_packed_lm_eval_is_one_padded_pass(lm_config, tokenizer):
  batches = list(pipeline.make_eval_batches(lm_config, tokenizer,
                                            'validation', batch_size=3))
  again = list(pipeline.make_eval_batches(lm_config, tokenizer, 'validation',
                                          batch_size=3))
  _assert_same_batches(batches, again)
  assert all(b['decoder_input_tokens'].shape == (3, SEQ_LEN) for b in batches)
  stats = stats_lib.split_stats(lm_config, tokenizer, 'validation')
  assert sum(b['decoder_loss_weights'].sum() for b in batches) == (
      stats.target_tokens)
  last = batches[-1]
  empty_rows = last['decoder_segment_ids'].sum(axis=1) == 0
  assert (last['decoder_loss_weights'][empty_rows] == 0).all()


def test_unknown_task_is_named(lm_config, tokenizer):
  config = _data_config(**{**lm_config.to_dict(), 'task': 'lm2'})
  with pytest.raises(ValueError, match=r"data.task='lm2' must be one of"):
    pipeline.make_train_iterator(config, tokenizer, batch_size=1, seed=0)


# ---------------------------------------------------------------- seq2seq

_S2S_TEXT = '0123456789'


def _s2s_records(split: str) -> list[dict]:
  """Reverse a random digit string of 1..12 digits; 60 train, 9 eval pairs."""
  rng = np.random.default_rng(len(split))
  records = []
  for _ in range(60 if split == 'train' else 9):
    digits = ''.join(rng.choice(list(_S2S_TEXT), rng.integers(1, 13)))
    records.append({'question': digits.encode(),
                    'answer': digits[::-1].encode()})
  return records


@pytest.fixture
def s2s(monkeypatch):
  monkeypatch.setattr(datasets, 'load_split',
                      lambda config, split: _s2s_records(split))
  tokenizer = tokenizers.CharTokenizer(_S2S_TEXT + 'rev: ')
  config = _data_config(name='fake', task='seq2seq', input_key='question',
                        target_key='answer', prefix='rev: ', max_input_len=12,
                        max_target_len=8, pack=False)
  return config, tokenizer


def test_seq2seq_prefixes_truncates_and_shifts(s2s):
  config, tokenizer = s2s
  records = _s2s_records('validation')
  (batch, *rest) = pipeline.make_eval_batches(config, tokenizer, 'validation',
                                              batch_size=len(records))
  assert not rest
  assert sorted(batch) == sorted(tasks.features(config))
  truncated = 0
  for row, record in enumerate(records):
    question, answer = record['question'].decode(), record['answer'].decode()
    enc = [*tokenizer.encode('rev: ' + question), tokenizer.eos_id]
    dec = [*tokenizer.encode(answer), tokenizer.eos_id]
    truncated += max(len(enc) - 12, 0) + max(len(dec) - 8, 0)
    enc, dec = enc[:12], dec[:8]
    np.testing.assert_array_equal(
        batch['encoder_input_tokens'][row][:len(enc)], enc)
    assert (batch['encoder_input_tokens'][row][len(enc):] == 0).all()
    np.testing.assert_array_equal(batch['encoder_segment_ids'][row],
                                  [1] * len(enc) + [0] * (12 - len(enc)))
    np.testing.assert_array_equal(
        batch['decoder_target_tokens'][row][:len(dec)], dec)
    np.testing.assert_array_equal(
        batch['decoder_input_tokens'][row][:len(dec)], [0, *dec[:-1]])
    np.testing.assert_array_equal(batch['decoder_loss_weights'][row],
                                  [1] * len(dec) + [0] * (8 - len(dec)))
  assert truncated > 0  # the data does exercise truncation.
  stats = stats_lib.split_stats(config, tokenizer, 'validation')
  assert stats.truncated_tokens == truncated
  assert stats.target_tokens == batch['decoder_loss_weights'].sum()
  assert stats.input_tokens == (batch['encoder_segment_ids'] > 0).sum()
  assert (stats.input_tokens + stats.target_tokens + stats.truncated_tokens
          == stats.source_tokens)


def test_seq2seq_eval_pads_the_last_batch(s2s):
  config, tokenizer = s2s
  batches = list(pipeline.make_eval_batches(config, tokenizer, 'validation',
                                            batch_size=4))
  assert len(batches) == 3  # 9 examples: 4 + 4 + 1 and 3 padding rows.
  last = batches[-1]
  assert last['encoder_input_tokens'].shape == (4, 12)
  assert (last['decoder_loss_weights'][1:] == 0).all()
  assert (last['encoder_segment_ids'][1:] == 0).all()


def test_packed_seq2seq_pairs_share_segment_ids(s2s):
  config, tokenizer = s2s
  config = _data_config(**{**config.to_dict(), 'pack': True,
                           'max_input_len': 24, 'max_target_len': 16})
  answer_of = {tuple(tokenizer.encode('rev: ' + r['question'].decode())):
               tuple(tokenizer.encode(r['answer'].decode()))
               for r in _s2s_records('train')}
  batches = _take(pipeline.make_train_iterator(config, tokenizer,
                                               batch_size=BATCH, seed=0), 5)
  pairs = 0
  for batch in batches:
    for b in range(BATCH):
      enc_segments = _segments(batch['encoder_segment_ids'][b])
      dec_segments = dict(_segments(batch['decoder_segment_ids'][b]))
      assert [s for s, _ in enc_segments] == sorted(dec_segments)
      for s, where in enc_segments:
        np.testing.assert_array_equal(batch['encoder_positions'][b][where],
                                      np.arange(len(where)))
        dec = dec_segments[s]
        np.testing.assert_array_equal(batch['decoder_positions'][b][dec],
                                      np.arange(len(dec)))
        inputs = batch['encoder_input_tokens'][b][where]
        targets = batch['decoder_target_tokens'][b][dec]
        assert inputs[-1] == targets[-1] == tokenizer.eos_id
        assert answer_of[tuple(inputs[:-1])] == tuple(targets[:-1])
        # The decoder restarts from start token 0 in every segment.
        np.testing.assert_array_equal(batch['decoder_input_tokens'][b][dec],
                                      [0, *targets[:-1]])
        pairs += 1
  assert pairs > len(batches) * BATCH  # several pairs per row.


def test_example_input_len_cuts_each_input_before_packing(s2s):
  config, tokenizer = s2s
  config = _data_config(**{**config.to_dict(), 'pack': True, 'max_input_len': 24,
                           'max_target_len': 64, 'example_input_len': 6})
  batch = next(pipeline.make_train_iterator(config, tokenizer, batch_size=BATCH, seed=0))
  lengths = [len(where) for b in range(BATCH)
             for _, where in _segments(batch['encoder_segment_ids'][b])]
  # Cut to 6 ('rev: ' + a digit + eos), four inputs fill a row of 24; uncut, a 12-digit one takes 18.
  assert max(lengths) == 6 and len(lengths) >= 3.5 * BATCH
  for b in range(BATCH):
    for _, where in _segments(batch['encoder_segment_ids'][b]):
      assert tokenizer.decode(batch['encoder_input_tokens'][b][where][:5]).startswith('rev: ')


@pytest.mark.parametrize('skip', [2, 20])  # 20 crosses an epoch.
def test_packed_seq2seq_resumes_exactly(s2s, skip):
  config, tokenizer = s2s
  config = _data_config(**{**config.to_dict(), 'pack': True,
                           'max_input_len': 24, 'max_target_len': 16})
  _assert_resumes_exactly(config, tokenizer, skip, seed=5)


def test_seq2seq_reads_catalogue_feature_keys(monkeypatch):
  """squad's input template joins two features (T5's format); its target reads a list inside a dict."""
  records = [{'question': f'q{i}'.encode(), 'context': b'ctx',
              'answers': {'text': [f'a{i}'.encode(), b'other'],
                          'answer_start': [0, 0]}} for i in range(5)]
  monkeypatch.setattr(datasets, 'load_split', lambda config, split: records)
  config = _data_config(name='squad', task='seq2seq', max_input_len=32,
                        max_target_len=4, pack=False,
                        **datasets.catalogue_features('squad'))
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  (batch,) = pipeline.make_eval_batches(config, tokenizer, 'validation',
                                        batch_size=len(records))
  for row in range(len(records)):
    enc = batch['encoder_input_tokens'][row]
    dec = batch['decoder_target_tokens'][row]
    assert tokenizer.decode(enc) == f'question: q{row} context: ctx'
    assert tokenizer.decode(dec) == f'a{row}'
  stats = stats_lib.split_stats(config, tokenizer, 'validation')
  assert stats.target_tokens == batch['decoder_loss_weights'].sum()


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


@pytest.mark.parametrize('text, split', [
    ('def get_value(self, key=None)', 'def get value(self, key=None)'),
    ('class HTTPServer(socketserver.TCPServer)', 'class HTTP Server(socketserver.TCP Server)'),
    ('Set ``__args__`` of _CallableGenericAlias', 'Set ``args`` of Callable Generic Alias'),
    ('utf8 and x2 stay; 3.5 and -> too', 'utf8 and x2 stay; 3.5 and -> too'),
])
def test_split_identifiers(text, split):
  assert tasks.split_identifiers(text) == split


def test_split_identifiers_reach_the_encoder_and_the_tokenizer_texts(
    s2s, monkeypatch):
  config, _ = s2s
  records = [{'question': b'get_value', 'answer': b'Get the value.'}]
  monkeypatch.setattr(datasets, 'load_split', lambda c, split: records)
  tokenizer = tokenizers.ByteTokenizer()
  config.update(split_identifiers=True, max_input_len=32, max_target_len=16)
  batch, = pipeline.make_eval_batches(config, tokenizer, 'validation',
                                      batch_size=1)
  assert tokenizer.decode(batch['encoder_input_tokens'][0]) == 'rev: get value'
  assert tokenizer.decode(batch['decoder_target_tokens'][0]) == 'Get the value.'
  assert tokenizer_cache.tokenizer_texts(config, 'train') == ['rev: get value',
                                                       'Get the value.']


# ---------------------------------------------------------------- span corruption


class _SentinelTokenizer(tokenizers.CharTokenizer):
  """A char tokenizer with T5-style sentinels: descending ids above the vocab."""

  def sentinel_id(self, i: int) -> int:
    return 1000 - i


def _restore(inputs, targets, sentinels) -> list[int]:
  """Undoes span corruption: each input sentinel -> the target span after it."""
  spans, current = {}, None
  for t in targets:
    if t in sentinels:
      current = spans.setdefault(t, [])
    else:
      current.append(t)
  return [x for t in inputs for x in (spans[t] if t in sentinels else [t])]


@pytest.mark.parametrize('length', [0, 1, 2, 3, 10, 57, 500])
def test_span_corruption_keeps_every_token_once_in_order(length):
  tokens = np.random.default_rng(length).integers(2, 100, length)
  sentinel = lambda i: 1000 - i  # noqa: E731
  for seed in range(20):
    inputs, targets = tasks.span_corruption(
        tokens, noise_density=0.15, mean_noise_span_length=3.0,
        rng=np.random.default_rng(seed), sentinel_id=sentinel)
    sentinels = set(range(900, 1001))
    assert _restore(inputs.tolist(), targets.tolist(), sentinels) == (
        tokens.tolist())
    used = [t for t in inputs if t in sentinels]
    assert used == [1000 - i for i in range(len(used))]  # descending ids.
    assert [t for t in targets if t in sentinels] == used
    if length >= 2:
      assert used  # at least one span.


def test_noise_mask_matches_density_and_is_seeded():
  masks = [tasks.random_spans_noise_mask(1000, 0.15, 3.0,
                                         np.random.default_rng(s))
           for s in (0, 0, 1)]
  np.testing.assert_array_equal(masks[0], masks[1])
  assert not np.array_equal(masks[0], masks[2])
  assert masks[0].sum() == 150 and not masks[0][0] and masks[0][-1]
  starts = masks[0] & ~np.concatenate([[False], masks[0][:-1]])
  assert starts.sum() == 50  # round(150 / 3.0) spans.


def test_span_corruption_lengths_fit_both_rows():
  n = tasks.span_corruption_lengths(512, 114, 0.15, 3.0)
  assert n == 568  # T5's random_spans_helper for inputs_length 512.
  assert tasks.span_corruption_lengths(512, 64, 0.15, 3.0) < n


@pytest.mark.parametrize('max_input_len, max_target_len',
                         [(3, 2), (4, 3), (5, 3), (6, 4), (8, 3), (12, 5),
                          (20, 10), (30, 6)])
def test_span_corruption_lengths_never_truncate_small_rows(max_input_len,
                                                           max_target_len):
  n = tasks.span_corruption_lengths(max_input_len, max_target_len, 0.15, 3.0)
  for length in range(1, n + 1):  # a document's last chunk may be shorter.
    for seed in range(5):
      inputs, targets = tasks.span_corruption(
          np.arange(2, length + 2), noise_density=0.15,
          mean_noise_span_length=3.0, rng=np.random.default_rng(seed),
          sentinel_id=lambda i: 1000 - i)
      assert len(inputs) + 1 <= max_input_len, (n, length)
      assert len(targets) + 1 <= max_target_len, (n, length)
  # And n is the longest such chunk: one more token would not fit.
  inputs, targets = tasks.span_corruption(
      np.arange(2, n + 3), noise_density=0.15, mean_noise_span_length=3.0,
      rng=np.random.default_rng(0), sentinel_id=lambda i: 1000 - i)
  assert (len(inputs) + 1 > max_input_len
          or len(targets) + 1 > max_target_len)


def test_span_noise_differs_between_processes(tmp_path):
  """Identical documents: only the noise can tell the two shards apart."""
  for i in range(8):
    (tmp_path / f'doc{i}.txt').write_text('abcdefgh' * 4)
  config = _data_config(name='text_files', path=str(tmp_path),
                        data_dir=str(tmp_path / 'tfds'),
                        task='span_corruption', max_input_len=40,
                        max_target_len=20, pack=False)
  tokenizer = _SentinelTokenizer('abcdefgh')
  batches = [_take(pipeline.make_train_iterator(
      config, tokenizer, batch_size=BATCH, seed=0, process_index=p,
      process_count=2), 2) for p in (0, 1)]
  for name in ('encoder_input_tokens', 'decoder_target_tokens'):
    assert not np.array_equal(np.stack([b[name] for b in batches[0]]),
                              np.stack([b[name] for b in batches[1]])), name


def test_span_corruption_pipeline(corpus):
  config = _data_config(name='text_files', path=str(corpus),
                        data_dir=str(corpus / 'tfds'), task='span_corruption',
                        max_input_len=20, max_target_len=10, pack=True)
  tokenizer = _SentinelTokenizer('abcdefgh')
  batches = list(pipeline.make_eval_batches(config, tokenizer, 'train',
                                            batch_size=BATCH))
  assert batches[0]['encoder_input_tokens'].shape == (BATCH, 20)
  assert batches[0]['decoder_target_tokens'].shape == (BATCH, 10)
  docs = [tuple(tokenizer.encode(t))
          for t in datasets.split_texts(config, 'train')]
  sentinels = set(range(900, 1001))
  restored = []
  for batch in batches:
    for b in range(BATCH):
      dec = dict(_segments(batch['decoder_segment_ids'][b]))
      for s, where in _segments(batch['encoder_segment_ids'][b]):
        inputs = batch['encoder_input_tokens'][b][where][:-1].tolist()
        targets = batch['decoder_target_tokens'][b][dec[s]][:-1].tolist()
        restored.append(tuple(_restore(inputs, targets, sentinels)))
  # Chunks of each document, reassembled: every token once.
  n = tasks.span_corruption_lengths(20, 10, 0.15, 3.0)
  assert sorted(restored) == sorted(doc[i:i + n] for doc in docs
                                    for i in range(0, len(doc), n))
  stats = stats_lib.split_stats(config, tokenizer, 'train')
  assert stats.truncated_tokens == 0
  assert stats.target_tokens == sum(b['decoder_loss_weights'].sum()
                                    for b in batches)


def test_split_identifiers_reach_span_corruption_documents(corpus,
                                                           monkeypatch):
  records = [{'text': b'def get_value(key)'}]
  monkeypatch.setattr(datasets, 'load_split', lambda c, split: records)
  config = _data_config(name='text_files', path=str(corpus),
                        data_dir=str(corpus / 'tfds'), task='span_corruption',
                        split_identifiers=True, pack=True)
  assert tokenizer_cache.tokenizer_texts(config, 'train') == ['def get value(key)']
  tokenizer = _SentinelTokenizer('def get value(key)')  # No '_': raw fails.
  doc, = tokenized.tokenize_split(config, tokenizer, 'train').documents
  assert tokenizer.decode(doc) == 'def get value(key)'


def test_span_corruption_needs_sentinels(lm_config, tokenizer):
  config = _data_config(**{**lm_config.to_dict(), 'task': 'span_corruption'})
  with pytest.raises(ValueError, match='sentinel'):
    pipeline.make_train_iterator(config, tokenizer, batch_size=1, seed=0)


# ---------------------------------------------------------------- describe


def test_describe_names_counts_and_decodes_rows(lm_config, tokenizer):
  text = report.describe(lm_config, tokenizer)
  for word in ('train', 'validation', 'bytes/token', 'truncated', 'dropped',
               'inputs', 'targets'):
    assert word in text, word
  assert '|' in text  # segment boundaries are shown
