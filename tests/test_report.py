"""Report: `./run.sh data` names the counts of each split and decodes the first rows."""


import ml_collections
import numpy as np
import pytest

from experiments import base
from lm.data import datasets
from lm.data import pipeline
from lm.data import report
from lm.data import tokenizer_cache

SEQ_LEN = 16


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = base.get_config().data.to_dict()
  config.update(tokenizer='char', seq_len=SEQ_LEN, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  """20 documents of 1..70 random letters: several shorter and longer than a row."""
  root = tmp_path_factory.mktemp('report')
  rng = np.random.default_rng(0)
  for i in range(20):
    n = 1 + (i * 37) % 70
    (root / f'doc{i:02d}.txt').write_text(''.join(rng.choice(list('abcdefgh'), n)))
  return root


@pytest.fixture(scope='module')
def lm_config(corpus):
  return _data_config(name='text_files', path=str(corpus),
                      data_dir=str(corpus / 'tfds'), task='lm', pack=True)


@pytest.fixture(scope='module')
def tokenizer(lm_config):
  return tokenizer_cache.get_tokenizer(lm_config, None)


def _fields(text: str, first: str) -> list[str]:
  """The whitespace-separated fields of the report line that starts with `first`."""
  line, = [line for line in text.split('\n') if line.split()[:1] == [first]]
  return line.split()


def test_describe_names_counts_and_decodes_rows(lm_config, tokenizer):
  text = report.describe(lm_config, tokenizer)
  for word in ('train', 'validation', 'bytes/token', 'truncated', 'dropped',
               'inputs', 'targets'):
    assert word in text, word
  # Segment boundaries are shown in rows (the footnote's ' | ' alone would pass a bare '|' check).
  assert any(line.startswith('  targets: ') and ' | ' in line for line in text.split('\n'))
  # The counts, derived from the texts alone: packed char-level LM, one token per character plus eos per
  # document, every token but a document's first a target, nothing truncated or dropped (no text is empty).
  for split in ('train', 'validation'):
    texts = datasets.split_texts(lm_config, split)
    assert all(texts)
    size, tokens = sum(len(t.encode('utf-8')) for t in texts), sum(len(t) + 1 for t in texts)
    assert _fields(text, split) == [split, f'{len(texts):,}', f'{size:,}', f'{tokens:,}', f'{size / tokens:.3f}',
                                    f'{len(texts):,}', f'{sum(map(len, texts)):,}', '0', '0']
  # Row 0 shows the first train batch's row 0 (seed 0), each segment decoded.
  batch = next(pipeline.make_train_iterator(lm_config, tokenizer, batch_size=3, seed=0))
  ids, targets = batch['decoder_segment_ids'][0], batch['decoder_target_tokens'][0]
  first = tokenizer.decode(targets[ids == 1])
  assert first and any(first in t for t in datasets.split_texts(lm_config, 'train'))
  lines = text.split('\n')
  assert 'row 0' in lines
  assert lines[lines.index('row 0') + 2].startswith(f'  targets: {first!r}')
