"""Pipeline: deterministic, resumable, process-sharded train; exact eval pass."""


import grain
import ml_collections
import numpy as np
import orbax.checkpoint as ocp
import pytest

from experiments import base
from lm.data import pipeline
from lm.data import tasks
from lm.data import tokenized
from lm.data import tokenizer_cache

SEQ_LEN = 16
BATCH = 4


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = base.get_config().data.to_dict()  # every key the pipeline reads.
  config.update(name='text_files', path='', data_dir='', source_dir='',
                tokenizer='char', seq_len=SEQ_LEN, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope='module')
def config(tmp_path_factory):
  """One file of random letters: 90% train (~56 rows), every row distinct."""
  root = tmp_path_factory.mktemp('pipeline')
  letters = np.random.default_rng(0).choice(list('abcdefghij \n'), 1000)
  (root / 'corpus.txt').write_text(''.join(letters))
  return _data_config(path=str(root / 'corpus.txt'), data_dir=str(root / 'tfds'))


@pytest.fixture(scope='module')
def tokenizer(config):
  return tokenizer_cache.get_tokenizer(config, None)


def _stream(config, tokenizer, split: str) -> np.ndarray:
  """The split's concat-and-chunk token stream, as the pipeline reads it."""
  return tasks.token_stream(tokenized.tokenize_split(config, tokenizer, split).documents, tokenizer.eos_id)


def _take(iterator, n: int) -> list[dict]:
  return [next(iterator) for _ in range(n)]


def _assert_same_batches(expected: list[dict], actual: list[dict]):
  assert len(expected) == len(actual)
  for want, got in zip(expected, actual):
    for name in tasks.FEATURES:
      np.testing.assert_array_equal(want[name], got[name], err_msg=name)


def _row_ids(batches: list[dict], stream: np.ndarray) -> list[int]:
  """Row index of each row in `batches`: its inputs start at stream[i * L]."""
  starts = {tuple(stream[i * SEQ_LEN:(i + 1) * SEQ_LEN]): i
            for i in range((len(stream) - 1) // SEQ_LEN)}
  return [starts[tuple(row)] for batch in batches
          for row in batch['decoder_input_tokens']]


def _train(config, tokenizer, **kwargs):
  kwargs = dict(batch_size=BATCH, seed=0) | kwargs
  return pipeline.make_train_iterator(config, tokenizer, **kwargs)


def test_batches_have_fixed_shapes_and_t5x_names(config, tokenizer):
  batch = next(_train(config, tokenizer))
  assert sorted(batch) == sorted(tasks.FEATURES)
  for name, value in batch.items():
    assert value.shape == (BATCH, SEQ_LEN), name
  assert batch['decoder_loss_weights'].dtype == np.float32
  assert batch['decoder_input_tokens'].dtype == np.int32
  np.testing.assert_array_equal(batch['decoder_positions'][0],
                                np.arange(SEQ_LEN))
  assert (batch['decoder_segment_ids'] == 1).all()
  assert (batch['decoder_loss_weights'] == 1).all()


def test_targets_are_inputs_shifted_by_one(config, tokenizer):
  stream = _stream(config, tokenizer, 'train')
  batches = _take(_train(config, tokenizer), 3)
  inputs = [row for b in batches for row in b['decoder_input_tokens']]
  targets = [row for b in batches for row in b['decoder_target_tokens']]
  for i, row_inputs, row_targets in zip(_row_ids(batches, stream), inputs,
                                        targets):
    np.testing.assert_array_equal(row_targets[:-1], row_inputs[1:])
    # The last target is the token after the window: the next row's first.
    assert row_targets[-1] == stream[(i + 1) * SEQ_LEN]


def test_stream_ends_each_document_with_eos(tmp_path):
  corpus = tmp_path / 'docs'
  corpus.mkdir()
  for name, text in [('a.txt', 'abc'), ('b.txt', 'de')]:
    (corpus / name).write_text(text)
  config = _data_config(path=str(corpus), data_dir=str(tmp_path / 'tfds'))
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  stream = _stream(config, tokenizer, 'train')
  np.testing.assert_array_equal(stream, [*tokenizer.encode('abc'), 1])


def test_same_seed_same_batches_other_seed_other_batches(config, tokenizer):
  first = _take(_train(config, tokenizer, seed=3), 5)
  _assert_same_batches(first, _take(_train(config, tokenizer, seed=3), 5))
  other = _take(_train(config, tokenizer, seed=4), 5)
  assert not all(np.array_equal(a['decoder_input_tokens'],
                                b['decoder_input_tokens'])
                 for a, b in zip(first, other))


def test_each_epoch_is_a_new_permutation_of_all_rows(config, tokenizer):
  stream = _stream(config, tokenizer, 'train')
  num_rows = (len(stream) - 1) // SEQ_LEN
  batches = _take(_train(config, tokenizer, batch_size=1), 2 * num_rows)
  ids = _row_ids(batches, stream)
  epoch_1, epoch_2 = ids[:num_rows], ids[num_rows:]
  assert sorted(epoch_1) == sorted(epoch_2) == list(range(num_rows))
  assert epoch_1 != epoch_2


@pytest.mark.parametrize('crosses_epoch', [False, True])
def test_resume_from_state_continues_exactly(config, tokenizer, crosses_epoch):
  stream = _stream(config, tokenizer, 'train')
  batches_per_epoch = (len(stream) - 1) // SEQ_LEN // BATCH
  skip = batches_per_epoch - 2 if crosses_epoch else 2
  assert batches_per_epoch > 5
  uninterrupted = _take(_train(config, tokenizer), skip + 5)
  interrupted = _train(config, tokenizer)
  _take(interrupted, skip)
  state = interrupted.get_state()
  resumed = _train(config, tokenizer)
  resumed.set_state(state)
  _assert_same_batches(uninterrupted[skip:], _take(resumed, 5))


def test_resume_through_an_orbax_checkpoint(config, tokenizer, tmp_path):
  uninterrupted = _take(_train(config, tokenizer), 6)
  iterator = _train(config, tokenizer)
  _take(iterator, 3)
  with ocp.CheckpointManager(tmp_path / 'ckpt') as manager:
    manager.save(3, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointSave(iterator)))
    manager.wait_until_finished()
    resumed = _train(config, tokenizer)
    manager.restore(3, args=ocp.args.Composite(
        data=grain.checkpoint.CheckpointRestore(resumed)))
  _assert_same_batches(uninterrupted[3:], _take(resumed, 3))


def test_worker_processes_give_the_same_batches_and_resume(config, tokenizer):
  in_process = _take(_train(config, tokenizer), 6)
  with_workers = _data_config(**{**config.to_dict(), 'num_workers': 1})
  iterator = _train(with_workers, tokenizer)
  resumed = _train(with_workers, tokenizer)
  try:
    _assert_same_batches(in_process[:3], _take(iterator, 3))
    # The state's layout depends on num_workers: resume with the same value.
    resumed.set_state(iterator.get_state())
    _assert_same_batches(in_process[3:], _take(resumed, 3))
  finally:
    iterator.close()
    resumed.close()


@pytest.mark.parametrize('pack', [False, True])
def test_resume_with_other_num_workers_names_both_values(config, tokenizer,
                                                         tmp_path, pack):
  in_process = _data_config(**{**config.to_dict(), 'pack': pack})
  with_workers = _data_config(**{**in_process.to_dict(), 'num_workers': 2})
  iterator = _train(in_process, tokenizer)
  _take(iterator, 2)
  resumed = _train(with_workers, tokenizer)
  try:
    with pytest.raises(ValueError, match=r'num_workers=0.*num_workers=2'):
      resumed.set_state(iterator.get_state())
    # Through orbax, as train.py restores it, the error is the same.
    with ocp.CheckpointManager(tmp_path / 'ckpt') as manager:
      manager.save(2, args=ocp.args.Composite(
          data=grain.checkpoint.CheckpointSave(iterator)))
      manager.wait_until_finished()
      with pytest.raises(ValueError, match=r'num_workers=0.*num_workers=2'):
        manager.restore(2, args=ocp.args.Composite(
            data=grain.checkpoint.CheckpointRestore(resumed)))
    with pytest.raises(ValueError, match=r'num_workers=2.*num_workers=0'):
      _train(in_process, tokenizer).set_state(resumed.get_state())
  finally:
    resumed.close()


def test_process_shards_are_disjoint_and_cover_the_rows(config, tokenizer):
  stream = _stream(config, tokenizer, 'train')
  num_rows = (len(stream) - 1) // SEQ_LEN
  count = 3
  shards = []
  for index in range(count):
    shard_len = len(range(index, num_rows, count))
    iterator = _train(config, tokenizer, batch_size=1, process_index=index,
                      process_count=count)
    shards.append(set(_row_ids(_take(iterator, shard_len), stream)))
    assert len(shards[-1]) == shard_len  # one epoch: no row twice.
  assert sum(map(len, shards)) == num_rows
  assert set().union(*shards) == set(range(num_rows))


def test_bad_process_index_is_named(config, tokenizer):
  with pytest.raises(ValueError, match=r'process_index 2 .*process_count=2'):
    _train(config, tokenizer, process_index=2, process_count=2)


def test_eval_covers_every_target_once_with_a_padded_last_batch(
    config, tokenizer):
  stream = _stream(config, tokenizer, 'validation')
  num_rows = -(-(len(stream) - 1) // SEQ_LEN)
  batch_size = num_rows // 2 + 1  # two batches, the second one short of rows.
  batches = list(pipeline.make_eval_batches(
      config, tokenizer, 'validation', batch_size=batch_size))
  assert len(batches) == 2
  weights = np.stack([b['decoder_loss_weights'] for b in batches])
  assert weights.sum() == len(stream) - 1
  assert (weights[-1].sum(axis=1) == 0).any()  # a whole padding row.
  targets = np.concatenate([b['decoder_target_tokens'].reshape(-1)
                            for b in batches])
  np.testing.assert_array_equal(targets[weights.reshape(-1) > 0], stream[1:])
  padding = weights.reshape(-1) == 0
  assert (targets[padding] == tokenizer.pad_id).all()
  assert all(b['decoder_input_tokens'].shape == (batch_size, SEQ_LEN)
             for b in batches)


def test_eval_of_a_split_shorter_than_one_row(tmp_path):
  (tmp_path / 'tiny.txt').write_text('abcdefghij' * 5)  # validation: 5 chars.
  config = _data_config(path=str(tmp_path / 'tiny.txt'),
                        data_dir=str(tmp_path / 'tfds'))
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  (batch,) = pipeline.make_eval_batches(config, tokenizer, 'validation',
                                        batch_size=2)
  weights = batch['decoder_loss_weights']
  assert weights.sum() == 5  # 5 characters + eos = 6 tokens, 5 targets.
  np.testing.assert_array_equal(weights[0], [1] * 5 + [0] * (SEQ_LEN - 5))
  assert weights[1].sum() == 0


def test_train_split_too_short_is_named(tmp_path):
  (tmp_path / 'tiny.txt').write_text('abcdefghij')
  config = _data_config(path=str(tmp_path / 'tiny.txt'),
                        data_dir=str(tmp_path / 'tfds'))
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  with pytest.raises(ValueError, match=r'seq_len \+ 1 = 17'):
    pipeline.make_train_iterator(config, tokenizer, batch_size=1, seed=0)
