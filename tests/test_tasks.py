"""Tasks: rows and their lengths, LM pieces, span corruption, identifier splitting (pure functions)."""


import ml_collections
import numpy as np
import pytest

from experiments import base
from lm.data import tasks


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = base.get_config().data.to_dict()
  config.update(overrides)
  return ml_collections.ConfigDict(config)


def test_row_lengths_follow_the_task():
  config = _data_config(seq_len=32, max_input_len=48, max_target_len=12)
  assert tasks.row_lengths(config) == tasks.RowLengths(decoder=32, encoder=0)
  for task in ('seq2seq', 'span_corruption'):
    config.task = task
    lengths = tasks.row_lengths(config)
    assert (lengths.decoder, lengths.encoder) == (12, 48)
  config.task = 'lm2'
  with pytest.raises(ValueError, match=r"data.task='lm2' must be one of \('lm', 'seq2seq', 'span_corruption'\)"):
    tasks.row_lengths(config)



def test_lm_pieces_share_one_token_and_hold_every_target_once():
  tokens = np.arange(10)
  pieces = tasks.lm_pieces(tokens, 4)
  assert [p.tolist() for p in pieces] == [[0, 1, 2, 3, 4], [4, 5, 6, 7, 8],
                                          [8, 9]]
  targets = np.concatenate([tasks.lm_example(p)['decoder_target_tokens']
                            for p in pieces])
  np.testing.assert_array_equal(targets, tokens[1:])
  assert tasks.lm_pieces(np.array([7]), 4) == []  # no target: dropped.


@pytest.mark.parametrize('text, split', [
    ('def get_value(self, key=None)', 'def get value(self, key=None)'),
    ('class HTTPServer(socketserver.TCPServer)', 'class HTTP Server(socketserver.TCP Server)'),
    ('Set ``__args__`` of _CallableGenericAlias', 'Set ``args`` of Callable Generic Alias'),
    ('utf8 and x2 stay; 3.5 and -> too', 'utf8 and x2 stay; 3.5 and -> too'),
])
def test_split_identifiers(text, split):
  assert tasks.split_identifiers(text) == split


# ---------------------------------------------------------------- span corruption


def restore_spans(inputs, targets, sentinels) -> list[int]:
  """Undoes span corruption: each input sentinel -> the target span after it (test_pipeline.py uses it too)."""
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
    assert restore_spans(inputs.tolist(), targets.tolist(), sentinels) == (
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


@pytest.mark.parametrize('noise_density, mean_noise_span_length', [(0.15, 3.0), (0.5, 1.0), (0.05, 8.0)])
def test_corrupted_lengths_are_those_of_every_noise(noise_density, mean_noise_span_length):
  """stats.py counts span corruption from corrupted_lengths, never running it: the lengths must be exact."""
  for length in range(60):
    tokens = np.arange(2, length + 2)
    want = tasks.corrupted_lengths(length, noise_density, mean_noise_span_length)
    for seed in range(5):
      inputs, targets = tasks.span_corruption(
          tokens, noise_density=noise_density, mean_noise_span_length=mean_noise_span_length,
          rng=np.random.default_rng(seed), sentinel_id=lambda i: 1000 - i)
      assert (len(inputs), len(targets)) == want, (length, seed)
