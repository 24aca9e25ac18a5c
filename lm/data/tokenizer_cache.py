"""The run's tokenizer: trained once per dataset and settings, cached beside the dataset, copied into the run.

    <workdir>/tokenizer/                                  the run's copy: a resumed run keeps its ids
    <dataset dir>/tokenizers/spm_<model_type>_<size>[_prefix<hash>][_split_identifiers]/
                                                          the SentencePiece model every run on the dataset shares,
                                                          with sample.json: the records it was trained on

A char vocabulary is built over all splits (as nanoGPT does), so held-out text never meets an unknown character;
it is cheap and not cached. SentencePiece trains on the train split only (byte fallback covers the rest), and of a
large one on a seeded sample of records (`sentencepiece_sample`), never the whole corpus. An imported Hugging Face
tokenizer ('huggingface', ./run.sh import) exists only as the run's copy: nothing builds one.
"""

import hashlib
import json
import os
from typing import Iterator

import numpy as np

from lm import errors
from lm import tokenizers
from lm.config import check
from lm.data import datasets
from lm.data import tasks
from lm.data import tokenized

RUN_SUBDIR = 'tokenizer'  # In a run directory: the tokenizer the run uses.
SAMPLE_FILENAME = 'sample.json'  # Beside a SentencePiece model: the records it was trained on.
# SentencePiece keeps a random 100k of the lines it is given (tokenizers._SPM_TRAINING_LINES); drawing 10x as many
# spreads those over 10x as many documents, and still reads all of a Shakespeare-sized split (126k lines), whose
# model so stays what it was. The character cap bounds memory on long lines (lm1b's 1M sentences are ~130M
# characters, code cut at 1024): about 100 MB of text held, and written once for the trainer.
_SAMPLE_LINES = 1_000_000
_SAMPLE_CHARS = 100_000_000
_SAMPLE_SEED = 0  # A constant, so every run on a dataset shares one cached model.
_READ_CHUNK = 256  # Records per batched read (__getitems__ is ~10x faster than one index at a time).


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
  sample = None
  if data_config.tokenizer == 'sentencepiece':
    tokenizer, sample = _cached_sentencepiece(data_config)
  else:
    texts = [text for split in datasets.SPLITS for text in tokenizer_texts(data_config, split)]
    tokenizer = tokenizers.make_tokenizer(data_config.tokenizer, texts)
  if directory:
    if sample is not None:  # The run's copy says what it was trained on too.
      _write_json(os.path.join(directory, SAMPLE_FILENAME), sample)
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
  sample_path = os.path.join(cache, SAMPLE_FILENAME)
  if os.path.exists(os.path.join(cache, 'tokenizer.json')) and os.path.exists(sample_path):
    with open(sample_path, encoding='utf-8') as f:
      sample = json.load(f)
    # Reused only if drawn as today's code draws it; a model cached before samples were recorded, or under
    # another budget or seed, is trained again (into the same folder).
    if sample.get('seed') == _SAMPLE_SEED and sample.get('budget') == {'lines': _SAMPLE_LINES, 'chars': _SAMPLE_CHARS}:
      tokenizer = tokenizers.load_tokenizer(cache)
      if tokenizer.to_dict().get('model_sha256') == sample.get('model_sha256'):  # Not a retraining cut short.
        return tokenizer, sample
  texts, sample = sentencepiece_sample(data_config)
  tokenizer = tokenizers.make_tokenizer('sentencepiece', texts, vocab_size=data_config.spm_vocab_size,
                                        model_type=data_config.spm_model_type)
  sample['model_sha256'] = tokenizer.to_dict().get('model_sha256')  # Ties the record to the model it made.
  # Before tokenizer.json, whose presence marks a finished cache.
  _write_json(os.path.join(cache, SAMPLE_FILENAME), sample)
  tokenizer.save(cache)
  return tokenizer, sample


def _write_json(path: str, value: dict) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  tmp = f'{path}.tmp{os.getpid()}'  # Then renamed: every process of a multi-host run may write it.
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(value, f, indent=1)
  os.replace(tmp, path)


def sentencepiece_sample(data_config, seed: int = _SAMPLE_SEED) -> tuple[list[str], dict]:
  """The train texts SentencePiece learns from, and the record of which they are.

  Records are drawn in a seeded random order and read by index until _SAMPLE_LINES lines (as
  tokenizers.training_lines cuts them) or _SAMPLE_CHARS characters are reached, so a large split reads only what
  the budget needs; a split within the budget is read whole. Texts are as `tokenizer_texts` makes them, in record
  order (so a whole split gives exactly its texts), and data.prefix is one more text for document tasks.
  """
  source = datasets.load_split(data_config, 'train')
  num_records = len(source)
  order, texts_of, lines, chars = _draw_order(num_records, seed), {}, 0, 0
  while lines < _SAMPLE_LINES and chars < _SAMPLE_CHARS:
    chunk = [i for _, i in zip(range(_READ_CHUNK), order)]
    if not chunk:
      break
    records = source.__getitems__(chunk) if hasattr(source, '__getitems__') else [source[i] for i in chunk]
    for i, record in zip(chunk, records):
      if lines >= _SAMPLE_LINES or chars >= _SAMPLE_CHARS:
        break
      texts_of[i] = _record_texts(record, data_config)
      for line in tokenizers.training_lines(texts_of[i]):
        lines, chars = lines + 1, chars + len(line)
  indices = sorted(texts_of)
  texts = [text for i in indices for text in texts_of[i]]
  if data_config.prefix and data_config.task != 'seq2seq':  # seq2seq has it in every input.
    texts.append(data_config.prefix)
    for line in tokenizers.training_lines([data_config.prefix]):
      lines, chars = lines + 1, chars + len(line)
  sample = {'split': 'train', 'seed': seed, 'records': num_records, 'sampled': len(indices),
            'whole_split': len(indices) == num_records, 'lines': lines, 'chars': chars,
            'budget': {'lines': _SAMPLE_LINES, 'chars': _SAMPLE_CHARS},
            'indices_sha256': hashlib.sha256(np.asarray(indices, '<i8').tobytes()).hexdigest()}
  return texts, sample


def _draw_order(num_records: int, seed: int) -> Iterator[int]:
  """Distinct record indices in a seeded random order, in memory bounded by the sample, not the split."""
  rng = np.random.default_rng(seed)
  # Every record with a non-blank line adds a line, so past this many draws the budget is reached (blank records
  # aside, which the draws stop at too).
  most = min(num_records, _SAMPLE_LINES)
  if num_records <= 4 * most:  # A permutation costs 8 bytes a record: at most 4x the sample's.
    yield from rng.permutation(num_records)[:most].tolist()
    return
  seen = set()  # Drawn with replacement, repeats skipped: under 1 in 4 draws repeats.
  while len(seen) < most:
    for i in rng.integers(num_records, size=_READ_CHUNK).tolist():
      if i not in seen and len(seen) < most:
        seen.add(i)
        yield i


def _record_texts(record: dict, data_config) -> list[str]:
  """One record's texts as `tokenizer_texts` makes them (the prefix of document tasks aside)."""
  if data_config.task == 'seq2seq':
    inputs, targets = datasets.pair(record, data_config)
    return [data_config.prefix + tasks.model_input(inputs, data_config), targets]
  return [tasks.model_input(text, data_config) for text in datasets.record_texts(record, data_config)]


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
