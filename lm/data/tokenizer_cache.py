"""The run's tokenizer: trained once per dataset and settings, cached beside the dataset, copied into the run.

    <workdir>/tokenizer/                                  the run's copy: a resumed run keeps its ids
    <dataset dir>/tokenizers/spm_<model_type>_<size>[_prefix<hash>][_split_identifiers]/
                                                          the SentencePiece model every run on the dataset shares

A char vocabulary is built over all splits (as nanoGPT does), so held-out text never meets an unknown character;
it is cheap and not cached. SentencePiece trains on the train split only (byte fallback covers the rest). An
imported Hugging Face tokenizer ('huggingface', ./run.sh import) exists only as the run's copy: nothing builds one.
"""

import hashlib
import os

from lm import errors
from lm import tokenizers
from lm.config import check
from lm.data import datasets
from lm.data import tasks
from lm.data import tokenized

RUN_SUBDIR = 'tokenizer'  # In a run directory: the tokenizer the run uses.


def get_tokenizer(data_config, workdir: str | None = None):
  """The run's tokenizer: workdir/tokenizer if saved (it must match data_config), else built from the data and,
  with a workdir, saved there."""
  directory = workdir and os.path.join(workdir, RUN_SUBDIR)
  if directory and os.path.isdir(directory):
    tokenizer = tokenizers.load_tokenizer(directory)
    _check_saved(tokenizer, data_config, directory)
    return tokenizer
  if data_config.tokenizer == 'huggingface':  # Nothing to build one from.
    where = f'{directory!r} holds none' if directory else 'a run without a workdir has none'
    raise errors.MissingError(
        f"data.tokenizer='huggingface' reads the tokenizer a Hugging Face import saved in the run directory, and "
        f'{where}: import the model with ./run.sh import, whose run directory holds it.')
  if data_config.tokenizer == 'sentencepiece':
    tokenizer = _cached_sentencepiece(data_config)
  else:
    texts = [text for split in datasets.SPLITS for text in tokenizer_texts(data_config, split)]
    tokenizer = tokenizers.make_tokenizer(data_config.tokenizer, texts)
  if directory:
    tokenizer.save(directory)
  return tokenizer


def _check_saved(tokenizer, data_config, directory: str) -> None:
  """The run's saved tokenizer is the one data_config asks for; else the run's ids would change meaning."""
  saved_kind = tokenizer.to_dict()['kind']
  check(saved_kind == data_config.tokenizer, 'data.tokenizer', data_config.tokenizer,
        f'but {directory!r} holds a {saved_kind!r} tokenizer; use a new workdir')
  if saved_kind == 'sentencepiece':
    for key, saved in (('spm_model_type', tokenizer.model_type), ('spm_vocab_size', tokenizer.vocab_size)):
      check(data_config[key] == saved, f'data.{key}', data_config[key],
            f'but {directory!r} holds a SentencePiece model with {key} {saved!r}; use a new workdir')


def _cached_sentencepiece(data_config):
  """The dataset's SentencePiece model for these settings: loaded if cached, else trained and cached."""
  # The cache lives inside the prepared dataset's folder, so prepare first: preparing renames a finished folder
  # onto that path, which must not exist before.
  builder = datasets.prepare(data_config)
  name = f'spm_{data_config.spm_model_type}_{data_config.spm_vocab_size}'
  if data_config.prefix:  # It is part of the training text.
    name += '_prefix' + hashlib.sha256(data_config.prefix.encode('utf-8')).hexdigest()[:8]
  if data_config.split_identifiers:  # So is the way inputs are written.
    name += '_split_identifiers'
  cache = os.path.join(builder.data_dir, 'tokenizers', name)
  if os.path.exists(os.path.join(cache, 'tokenizer.json')):
    return tokenizers.load_tokenizer(cache)
  tokenizer = tokenizers.make_tokenizer('sentencepiece', tokenizer_texts(data_config, 'train'),
                                        vocab_size=data_config.spm_vocab_size,
                                        model_type=data_config.spm_model_type)
  tokenizer.save(cache)
  return tokenizer


def tokenizer_texts(data_config, split: str) -> list[str]:
  """The texts of `split` a tokenizer is built from: what the pipeline encodes.

  seq2seq reads each record's data.prefix + input (as tasks.model_input writes it), then its target, through
  data.input_key / data.target_key; the other tasks read the documents (tokenized.model_texts) and, if set, the
  prefix as one more text.
  """
  prefix = data_config.prefix
  if data_config.task == 'seq2seq':
    return [text for inputs, targets in datasets.split_pairs(data_config, split)
            for text in (prefix + tasks.model_input(inputs, data_config), targets)]
  return tokenized.model_texts(data_config, split) + ([prefix] if prefix else [])
