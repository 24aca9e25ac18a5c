"""data.streaming: concat-and-chunk train rows from records read by index and tokenized in the pipeline, the split
never read whole; exact resume with worker processes, disjoint process shards, and a run that trains on them."""
import json
import string

from conftest import data_config
import numpy as np
import pytest

from lm import config as config_lib
from lm import tokenizers
from lm.data import pipeline
from lm.data import tokenized


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """26 records, record i the i-th letter repeated 20 + 7 i times: a row's letters name its records."""
  root = tmp_path_factory.mktemp('streaming')
  with open(root / 'docs.jsonl', 'w') as f:
    for i, letter in enumerate(string.ascii_lowercase):
      f.write(json.dumps({'text': letter * (20 + 7 * i)}) + '\n')
  return root


def config_of(corpus, **overrides):
  return data_config(**{'name': 'local', 'path': str(corpus / 'docs.jsonl'), 'data_dir': str(corpus / 'tfds'),
                        'streaming': True, 'validation_fraction': 0.1, 'streaming_shuffle_rows': 8, **overrides})


TOKENIZER = tokenizers.CharTokenizer(string.ascii_lowercase)


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
  assert resumed.stats == first.stats and first.stats.target_tokens == (step + 6) * 4 * 16
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
  assert seen[0] | seen[1] == {text[0] for text in records}


def test_other_modes_are_refused_by_name(corpus):
  config = config_lib.defaults()
  config.data.update(streaming=True, pack=True)
  with pytest.raises(config_lib.ConfigError, match='data.streaming=True covers concat-and-chunk LM rows'):
    config_lib.validate(config)


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
