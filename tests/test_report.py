"""Report: `./run.sh data` names the counts of each split and decodes the first rows."""


import ml_collections
import numpy as np
import pytest

from experiments import base
from lm.data import datasets
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


def test_describe_names_counts_and_decodes_rows(lm_config, tokenizer):
  text = report.describe(lm_config, tokenizer)
  for word in ('train', 'validation', 'bytes/token', 'truncated', 'dropped',
               'inputs', 'targets'):
    assert word in text, word
  assert '|' in text  # segment boundaries are shown
