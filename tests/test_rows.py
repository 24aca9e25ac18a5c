"""Rows: concat-and-chunk windows hold every target once; padding and packing output the batch contract."""

import json

import grain
import ml_collections
import numpy as np
import pytest

from experiments import base
from lm import errors
from lm.data import rows
from lm.data import tasks


@pytest.mark.parametrize('num_tokens', [1, 2, 16, 17, 40])
def test_chunked_stream_holds_every_target_once(num_tokens):
  tokens = np.arange(2, 2 + num_tokens, dtype=np.int32)
  partial = rows.ChunkedStream(tokens, 16, keep_partial=True)
  chunks = [partial[i] for i in range(len(partial))]
  weights = np.concatenate([row['decoder_loss_weights'] for row in chunks]) > 0
  targets = np.concatenate([row['decoder_target_tokens'] for row in chunks])
  np.testing.assert_array_equal(targets[weights], tokens[1:])
  assert all(sorted(row) == sorted(tasks.FEATURES) for row in chunks)
  full = rows.ChunkedStream(tokens, 16, keep_partial=False)
  assert len(full) == (num_tokens - 1) // 16  # no partial row.
  assert all(full[i]['decoder_loss_weights'].all() for i in range(len(full)))
  with pytest.raises(IndexError, match=rf'Row {len(partial)} outside'):
    _ = partial[len(partial)]


def test_example_lengths_follow_the_task():
  config = ml_collections.ConfigDict({**base.get_config().data.to_dict(), 'seq_len': 32, 'max_input_len': 48,
                                      'max_target_len': 12})
  assert rows.example_lengths(config) == {name: 32 for name in tasks.FEATURES[:3]}
  config.task = 'seq2seq'
  assert rows.example_lengths(config) == {'encoder_input_tokens': 48, **{name: 12 for name in tasks.FEATURES[:3]}}


def test_padded_and_packed_rows_have_segment_ids_and_positions_per_side():
  example, truncated = tasks.encoder_decoder_example([5, 6, 7], [8, 9], eos_id=1, max_input_len=6, max_target_len=4)
  assert truncated == 0
  row = rows.pad_example(example, {'encoder_input_tokens': 6, 'decoder_input_tokens': 4,
                                   'decoder_target_tokens': 4, 'decoder_loss_weights': 4})
  np.testing.assert_array_equal(row['encoder_input_tokens'], [5, 6, 7, 1, 0, 0])
  np.testing.assert_array_equal(row['encoder_segment_ids'], [1, 1, 1, 1, 0, 0])
  np.testing.assert_array_equal(row['decoder_positions'], [0, 1, 2, 0])
  np.testing.assert_array_equal(row['decoder_input_tokens'], [0, 8, 9, 0])
  packed = rows.from_packed({'decoder_target_tokens': np.array([3, 4, 5]),
                             'decoder_target_tokens_segment_ids': np.array([1, 2, 2]),
                             'decoder_target_tokens_positions': np.array([0, 0, 1]),
                             'decoder_loss_weights': np.ones(3, np.float32),
                             'decoder_loss_weights_segment_ids': np.array([1, 2, 2]),
                             'decoder_loss_weights_positions': np.array([0, 0, 1])})
  assert sorted(packed) == ['decoder_loss_weights', 'decoder_positions', 'decoder_segment_ids',
                            'decoder_target_tokens']
  np.testing.assert_array_equal(packed['decoder_segment_ids'], [1, 2, 2])
  assert packed['decoder_positions'].dtype == np.int32


def test_pad_batch_adds_zero_weight_rows():
  batch = {'decoder_loss_weights': np.ones((1, 3), np.float32), 'decoder_segment_ids': np.ones((1, 3), np.int32)}
  padded = rows.pad_batch(batch, batch_size=3)
  assert padded['decoder_loss_weights'].shape == (3, 3) and padded['decoder_loss_weights'][1:].sum() == 0
  assert padded['decoder_segment_ids'].dtype == np.int32 and padded['decoder_segment_ids'][1:].sum() == 0


def test_document_pieces_are_the_lists_of_lm_pieces_and_span_chunks_read_lazily():
  """Documents of 0..30 tokens (empty, one token, exact multiples): the same pieces in the same order."""
  rng = np.random.default_rng(0)
  documents = [rng.integers(2, 50, n).astype(np.int32) for n in [0, 1, 4, 5, 8, 9, 30, 2, 0, 3]]
  eos = np.array([1], np.int32)
  framed = [np.concatenate([doc, eos]) for doc in documents]
  for seq_len in (1, 4, 7):
    want = [piece for doc in framed for piece in tasks.lm_pieces(doc, seq_len)]
    got = rows.DocumentPieces(lambda d, a, b: framed[d][a:b], [len(doc) for doc in framed], width=seq_len + 1,
                              stride=seq_len, overlap=1)
    assert len(got) == len(want) and all(np.array_equal(got[i], w) for i, w in enumerate(want)), seq_len
    want = tasks.span_chunks(documents, seq_len)
    got = rows.DocumentPieces(lambda d, a, b: documents[d][a:b], [len(doc) for doc in documents], width=seq_len,
                              stride=seq_len, overlap=0)
    assert len(got) == len(want) and all(np.array_equal(got[i], w) for i, w in enumerate(want)), seq_len
  with pytest.raises(IndexError):
    got[len(got)]


@pytest.mark.parametrize('seq_len', [1, 4, 7])
def test_stream_chunks_cut_the_rows_of_the_whole_stream_as_documents_arrive_and_resume_mid_document(seq_len):
  rng = np.random.default_rng(1)
  documents = [np.concatenate([rng.integers(2, 50, n), [1]]).astype(np.int32) for n in [0, 3, 9, 1, 12, 5, 0, 7]]
  want = rows.ChunkedStream(np.concatenate(documents), seq_len, keep_partial=False)
  source = grain.MapDataset.source([(d, 100 + i) for i, d in enumerate(documents)]).to_iter_dataset()  # i's bytes.
  it = iter(rows.StreamChunks(source, seq_len))
  got = list(it)
  assert len(got) == len(want)
  for i, row in enumerate(got):
    for name in want[i]:
      np.testing.assert_array_equal(row[name], want[i][name], err_msg=f'row {i} {name}')
  # A row carries the bytes of the records read for it: up to the one that completes its (k + 1) L + 1 tokens.
  last = np.searchsorted(np.cumsum([len(d) for d in documents]), np.arange(1, len(got) + 1) * seq_len + 1)
  first = np.concatenate([[0], last[:-1] + 1])
  assert [int(row['count_bytes'][0]) for row in got] == [sum(100 + i for i in range(a, b + 1))
                                                         for a, b in zip(first, last)]
  for stop in range(len(got)):  # A state saved after any row resumes at the next one.
    it = iter(rows.StreamChunks(source, seq_len))
    for _ in range(stop):
      next(it)
    state = it.get_state()
    resumed = iter(rows.StreamChunks(source, seq_len))
    resumed.set_state(state)
    following = next(resumed)
    for name in following:
      np.testing.assert_array_equal(following[name], got[stop][name], err_msg=f'row {stop} {name}')


def test_a_stream_chunks_state_of_the_older_layout_is_refused_by_name():
  source = grain.MapDataset.source([(np.arange(40, dtype=np.int32), 1)]).to_iter_dataset()
  with pytest.raises(errors.InputError, match='older streaming pipeline'):
    iter(rows.StreamChunks(source, 8)).set_state({'parent': {}, 'left': [1, 2, 3]})


def test_a_stream_chunks_state_stays_small_mid_way_through_a_long_document():
  """The state names where the tokens left over come from, not the tokens: after one row of a 100k-token record
  it is a few hundred bytes, and it resumes at the next row."""
  documents = [(np.arange(2, 100_002, dtype=np.int32) % 50 + 2, 7), (np.full(9, 3, np.int32), 1)]
  source = grain.MapDataset.source(documents).to_iter_dataset()
  it = iter(rows.StreamChunks(source, 16))
  next(it)
  state = it.get_state()
  assert len(json.dumps(state)) < 500, state
  resumed = iter(rows.StreamChunks(source, 16))
  resumed.set_state(state)
  want, got = next(it), next(resumed)
  np.testing.assert_array_equal(got['decoder_input_tokens'], want['decoder_input_tokens'])
  assert got['count_bytes'][0] == want['count_bytes'][0] == 0  # Read, and counted, before the state.


def test_flatten_emits_each_records_items_and_resumes_after_any_of_them():
  records = [[1, 2, 3], [], [4], [5, 6], [], [], [7, 8, 9, 10], []]
  source = grain.MapDataset.source(records).to_iter_dataset()
  got = list(iter(rows.Flatten(source)))
  assert got == [item for record in records for item in record]
  # The counts of records without examples ride on the next example.
  counted = [[rows.with_counts({'x': 1}, bytes=3)], [rows.counts_only(bytes=5, dropped=1)],
             [rows.counts_only(bytes=7, dropped=1)], [rows.with_counts({'x': 2}, bytes=11), rows.with_counts({'x': 3})]]
  counted_source = grain.MapDataset.source(counted).to_iter_dataset()
  items = list(iter(rows.Flatten(counted_source)))
  assert [(i['x'], int(i['count_bytes'][0]), int(i['count_dropped'][0])) for i in items] == [(1, 3, 0), (2, 23, 2),
                                                                                               (3, 0, 0)]
  for stop in range(len(items) + 1):  # Carried counts are neither lost nor counted twice across a resume.
    it = iter(rows.Flatten(counted_source))
    for _ in range(stop):
      next(it)
    resumed = iter(rows.Flatten(counted_source))
    resumed.set_state(it.get_state())
    assert [int(i['count_bytes'][0]) for i in resumed] == [int(i['count_bytes'][0]) for i in items[stop:]], stop
  for stop in range(len(got) + 1):  # A state saved after any item, mid-record too, resumes at the next one.
    it = iter(rows.Flatten(source))
    for _ in range(stop):
      next(it)
    resumed = iter(rows.Flatten(source))
    resumed.set_state(it.get_state())
    assert list(resumed) == got[stop:], stop
