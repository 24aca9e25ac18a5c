"""data.streaming: train rows from records read by index and tokenized in the pipeline, the split never read
whole, in every mode (concat-and-chunk, LM packing, seq2seq, span corruption); exact resume with worker processes,
one epoch holding the whole-split path's examples and accounting, disjoint process shards, and a run that trains on
them."""
import collections
import json
import shutil
import string

from conftest import data_config
import numpy as np
import pytest
import test_tasks

from lm import tokenizers
from lm.data import datasets
from lm.data import pipeline
from lm.data import pretokenized
from lm.data import tasks
from lm.data import tokenized

TEXTS = [letter * (20 + 7 * i) for i, letter in enumerate(string.ascii_lowercase)]
TEXTS[4:4], TEXTS[17:17] = [''], ['']  # Documents that give no example: dropped, and counted as such.


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """28 records: the i-th letter repeated 20 + 7 i times, and two empty ones: a row's letters name its records."""
  root = tmp_path_factory.mktemp('streaming')
  with open(root / 'docs.jsonl', 'w') as f:
    for text in TEXTS:
      f.write(json.dumps({'text': text}) + '\n')
  return root


def config_of(corpus, **overrides):
  return data_config(**{'name': 'local', 'path': str(corpus / 'docs.jsonl'), 'data_dir': str(corpus / 'tfds'),
                        'streaming': True, 'validation_fraction': 0.1, 'streaming_shuffle_rows': 8, **overrides})


TOKENIZER = tokenizers.CharTokenizer(string.ascii_lowercase)


@pytest.fixture(autouse=True)
def small_read_groups_and_closed_iterators(monkeypatch):
  """Records read 3 at a time, not 64: these corpora then span many groups, and states fall inside and between
  them (the pipeline takes the group size when built, so its worker processes get it too). Every train iterator a
  test makes is closed after it: an endless one's worker processes would otherwise go on taking the CPU from the
  tests after it (a speed test of test_train.py failed so)."""
  monkeypatch.setattr(datasets, 'READ_GROUP', 3)
  made, make = [], pipeline.make_train_iterator

  def tracked(*args, **kwargs):
    made.append(make(*args, **kwargs))
    return made[-1]

  monkeypatch.setattr(pipeline, 'make_train_iterator', tracked)
  yield
  for iterator in made:
    iterator.close()


@pytest.fixture(scope='module')
def mode_of(corpus, tmp_path_factory):
  """mode_of(mode, **overrides) -> (config, tokenizer) streaming an example mode, packed: 'lm_pack' and
  'span_corruption' (SentencePiece, for its sentinels) over the corpus, 'seq2seq' over 40 synthetic `reverse`
  pairs of 4 digits, whose inputs lose 2 of their 7 tokens."""
  spm = tokenizers.make_tokenizer('sentencepiece', TEXTS, vocab_size=400)
  pairs = tmp_path_factory.mktemp('streaming_pairs')

  def of(mode, **overrides):
    if mode == 'seq2seq':
      config = data_config(**{'name': 'reverse', 'task': 'seq2seq', 'synthetic_length': 4, 'synthetic_examples': 40,
                              'data_dir': str(pairs / 'tfds'), 'prefix': 'r ', 'max_input_len': 16,
                              'example_input_len': 5, 'max_target_len': 12, 'pack': True, 'streaming': True,
                              'streaming_shuffle_rows': 8, **overrides})
      return config, tokenizers.CharTokenizer('0123456789 r')
    if mode == 'span_corruption':
      return config_of(corpus, **{'task': 'span_corruption', 'max_input_len': 20, 'max_target_len': 10,
                                  'pack': True, **overrides}), spm
    return config_of(corpus, **{'pack': True, **overrides}), TOKENIZER
  return of


def segments(batches, config, tokenizer) -> collections.Counter:
  """The batches' examples, each as the tuple of its segment's tokens: an LM piece's targets, a seq2seq pair's
  (encoder tokens, targets), a span-corruption chunk restored from its inputs and targets."""
  sentinels = {tokenizer.sentinel_id(i) for i in range(tokenizer.num_sentinels)}
  found = collections.Counter()
  for batch in batches:
    for b, row in enumerate(batch['decoder_segment_ids']):
      for s in set(row[batch['decoder_loss_weights'][b] > 0].tolist()):
        targets = batch['decoder_target_tokens'][b][row == s].tolist()
        if config.task == 'lm':
          found[tuple(targets)] += 1
          continue
        inputs = batch['encoder_input_tokens'][b][batch['encoder_segment_ids'][b] == s].tolist()
        if config.task == 'span_corruption':  # Without eos.
          found[tuple(test_tasks.restore_spans(inputs[:-1], targets[:-1], sentinels))] += 1
        else:
          found[(tuple(inputs), tuple(targets))] += 1
  return found


def test_a_state_saved_at_a_random_step_resumes_with_the_batch_that_came_next_with_workers(corpus):
  config = config_of(corpus, num_workers=2)
  first = pipeline.make_train_iterator(config, TOKENIZER, batch_size=4, seed=5)
  assert first.streaming and first.stats.target_tokens == 0  # Nothing counted up front.
  step = int(np.random.default_rng().integers(3, 40))  # Past an epoch of ~45 rows, at times.
  drawn = [next(first) for _ in range(step)]
  state = first.get_state()
  want = [next(first) for _ in range(6)]
  resumed = pipeline.make_train_iterator(config, TOKENIZER, batch_size=4, seed=5)
  resumed.set_state(state)
  for a, b in zip(want, [next(resumed) for _ in range(6)]):
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=f'{name} after step {step}')
  # The accounting of the batches drawn, resumed with the state: every row full, a document per EOS target.
  assert resumed.stats == first.stats and first.stats.target_tokens == (step + 6) * 4 * 16, step
  ends = sum(int((b['decoder_target_tokens'] == TOKENIZER.eos_id).sum()) for b in drawn + want)
  assert first.stats.examples == ends > 0
  s = first.stats
  assert s.input_tokens == 2 and s.input_tokens + s.target_tokens + s.truncated_tokens == s.source_tokens


def test_each_process_reads_its_own_records_and_together_they_read_all(corpus):
  config = config_of(corpus)
  tokenized._DOCUMENTS.clear()
  records = tokenized.model_texts(config_of(corpus, streaming=False), 'train')
  seen = []
  for index in range(2):
    it = pipeline.make_train_iterator(config, TOKENIZER, batch_size=2, seed=0, process_index=index, process_count=2,
                                      num_epochs=1)
    letters = set()
    for batch in it:
      ids = batch['decoder_target_tokens'][batch['decoder_loss_weights'] > 0]
      letters |= set(TOKENIZER.decode(ids[ids != TOKENIZER.eos_id]))
    seen.append(letters)
  assert not seen[0] & seen[1]
  # Every record's letter: each record (20+ letters) is longer than the partial last row that is dropped.
  assert seen[0] | seen[1] == {text[0] for text in records if text}


@pytest.mark.parametrize('mode', ['lm_pack', 'seq2seq', 'span_corruption'])
def test_each_example_mode_resumes_at_a_random_step_with_workers(mode, mode_of):
  """The example modes: a record's examples are emitted one by one (rows.Flatten), window-shuffled and packed, in
  each worker. One iterator, to start the workers once: set_state sends the state to them, and each restores its
  pipeline from it as a fresh iterator's workers would (the concat-and-chunk test above starts a fresh one)."""
  config, tokenizer = mode_of(mode, num_workers=2)
  it = pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=5)
  step = int(np.random.default_rng().integers(3, 40))  # Past an epoch (5 to 40 batches), at times.
  for _ in range(step):
    next(it)
  state, stats = it.get_state(), it.stats
  want = [next(it) for _ in range(6)]
  after = it.stats
  it.set_state(state)
  assert it.stats == stats and stats.examples > 0 and sorted(want[0]) == sorted(tasks.features(config)), step
  for a, b in zip(want, [next(it) for _ in range(6)]):
    for name in a:
      np.testing.assert_array_equal(a[name], b[name], err_msg=f'{mode} {name} after step {step}')
  assert it.stats == after, f'{mode} after step {step}'


@pytest.mark.parametrize('mode, num_workers', [('lm_pack', 0), ('seq2seq', 0), ('span_corruption', 2)])
def test_one_streamed_epoch_holds_the_whole_split_paths_examples_and_accounting(mode, num_workers, mode_of):
  """num_epochs=1: the streamed examples, as a multiset (the orders differ), are those of the whole-split path, and
  the accounting counted from the batches is its count up front, bytes and dropped documents included. With
  workers (one mode: they start slowly), each reads its own share of the records."""
  config, tokenizer = mode_of(mode, num_workers=num_workers)
  streamed = pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1)
  got = segments(streamed, config, tokenizer)
  tokenized._DOCUMENTS.clear()
  config.update(streaming=False, num_workers=0)
  whole = pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1)
  assert got == segments(whole, config, tokenizer) and sum(got.values()) > 10
  assert streamed.stats == whole.stats
  assert streamed.stats.bytes > 0 and (streamed.stats.dropped_examples == 2) == (mode != 'seq2seq')
  # Truncation: seq2seq's inputs are cut, LM packing loses the empty documents' lone eos, span corruption nothing.
  lost = streamed.stats.truncated_tokens
  assert lost > 0 if mode == 'seq2seq' else lost == {'lm_pack': 2, 'span_corruption': 0}[mode]


@pytest.mark.parametrize('mode', ['lm_pack', 'span_corruption'])
def test_a_pretokenized_epoch_holds_the_streamed_epochs_examples(mode, mode_of):
  """The same split pretokenized (./run.sh pretokenize) and streamed: one epoch holds the same examples and counts.
  (Concat-and-chunk rows cannot match batch for batch: a streamed row is cut from records in their shuffled order.)"""
  config, tokenizer = mode_of(mode)
  streamed = pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1)
  got = segments(streamed, config, tokenizer)
  found = pretokenized.pretokenize(config, tokenizer, 'train')
  try:
    tokenized._DOCUMENTS.clear()
    read = pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1)  # Reads the file.
    assert not read.streaming and got == segments(read, config, tokenizer) and sum(got.values()) > 10
    assert streamed.stats == read.stats
  finally:  # The corpus is the module's: later tests stream it again.
    shutil.rmtree(found.directory)
    tokenized._DOCUMENTS.clear()


def test_process_shards_of_packed_lm_examples_are_disjoint_and_cover_the_split(mode_of):
  """Each record's letter names it: no letter in both shards, and the two shards' pieces are the whole split's."""
  config, _ = mode_of('lm_pack')
  shards = [segments(pipeline.make_train_iterator(config, TOKENIZER, batch_size=2, seed=0, process_index=index,
                                                  process_count=2, num_epochs=1), config, TOKENIZER)
            for index in range(2)]
  letters = [{token for piece in shard for token in piece if token != TOKENIZER.eos_id} for shard in shards]
  assert letters[0] and letters[1] and not letters[0] & letters[1]
  tokenized._DOCUMENTS.clear()
  config.streaming = False
  whole = pipeline.make_train_iterator(config, TOKENIZER, batch_size=2, seed=0, num_epochs=1)
  assert shards[0] + shards[1] == segments(whole, config, TOKENIZER)


def test_process_shards_draw_different_span_noise(mode_of, tmp_path):
  """Identical documents: only the noise can tell the two shards' batches apart."""
  (tmp_path / 'same.jsonl').write_text(''.join(json.dumps({'text': 'abcdefgh' * 4}) + '\n' for _ in range(8)))
  config, tokenizer = mode_of('span_corruption', path=str(tmp_path / 'same.jsonl'), data_dir=str(tmp_path / 'tfds'),
                              max_input_len=40, max_target_len=20, pack=False)
  batches = [next(pipeline.make_train_iterator(config, tokenizer, batch_size=2, seed=0, process_index=index,
                                               process_count=2)) for index in range(2)]
  for name in ('encoder_input_tokens', 'decoder_target_tokens'):
    assert not np.array_equal(batches[0][name], batches[1][name]), name


def test_a_streamed_run_trains_and_resumes_exactly_from_its_checkpoint(corpus, tmp_path, monkeypatch):
  """Through train_and_evaluate: the iterator's state (record position, tokens left over, shuffle window) is saved
  in the checkpoint, and the run stopped after step 5 then resumed logs the straight run's losses."""
  import test_train  # noqa: PLC0415 (tests/ is on the path once pytest runs)
  config = test_train.tiny_config(corpus, num_steps=10, checkpoint_every=100, eval_every=100)
  config.data.update(name='local', path=str(corpus / 'docs.jsonl'), tokenizer='char', streaming=True,
                     streaming_shuffle_rows=8)
  test_train.assert_resume_is_exact(config, tmp_path, monkeypatch, stop_after=5)
  # The accounting as the stream ran, logged at the eval (step 10): the resumed run counted on from its checkpoint
  # (its 5 steps after the resume alone would be 5 * 8 * 32 targets).
  straight, split = (test_train.read_metrics(tmp_path / name, split='data') for name in ('straight', 'split'))
  assert [row['step'] for row in straight] == [10] and straight[-1]['target_tokens'] == 10 * 8 * 32
  assert split[-1] == straight[-1] and straight[-1]['examples'] > 0


@pytest.mark.parametrize('mode', ['lm', 'lm_pack', 'seq2seq'])
def test_with_shuffling_off_streaming_gives_the_whole_split_paths_batches(mode, mode_of, corpus):
  """data.shuffle=False: records, rows and examples in the split's order on every path, so the batches (not only
  their examples) of streaming, of the whole split and of its pretokenized file are the same, batch for batch
  (span corruption aside: its noise is keyed by other indices)."""
  config, tokenizer = (config_of(corpus, shuffle=False), TOKENIZER) if mode == 'lm' else mode_of(mode, shuffle=False)
  streamed = pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1)
  got = list(streamed)
  tokenized._DOCUMENTS.clear()
  config.streaming = False
  want = list(pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1))
  if mode != 'seq2seq':  # And a pretokenized split's (seq2seq pairs have no token file).
    found = pretokenized.pretokenize(config, tokenizer, 'train')
    try:
      tokenized._DOCUMENTS.clear()
      read = list(pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1))
    finally:  # The corpus is the module's: later tests stream it again.
      shutil.rmtree(found.directory)
      tokenized._DOCUMENTS.clear()
  for other in [want] + ([read] if mode != 'seq2seq' else []):
    assert len(got) == len(other) > 3
    for i, (a, b) in enumerate(zip(got, other)):
      assert sorted(a) == sorted(b)
      for name in a:
        np.testing.assert_array_equal(a[name], b[name], err_msg=f'{mode} batch {i} {name}')
  config.update(shuffle=True, streaming=True)  # Shuffled, the order differs.
  shuffled = list(pipeline.make_train_iterator(config, tokenizer, batch_size=4, seed=0, num_epochs=1))
  assert not np.array_equal(shuffled[0]['decoder_target_tokens'], got[0]['decoder_target_tokens'])
