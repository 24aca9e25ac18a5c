"""Data sets by name: our TFDS builders and the TFDS catalogue, as ArrayRecord.

`make_builder` maps data.name to a builder; `prepare` prepares it once into
the data dir, and `load_split` returns a split's random-access source, read with
`builder.as_data_source` (what `tfds.data_source` calls), which needs no
TensorFlow. Our builders skip tfds' global registry so that importing them
twice, or a catalogue dataset of the same name, can never clash; we construct
them ourselves in `make_builder`.

Ours, one module each:
- `corpora.py`: `shakespeare` and `text_files`, and `local.py`: `local` (txt,
  jsonl, parquet, converted once by its own streaming writer), documents
  `{'text': str, 'title': str}` (read them with `split_texts`).
- `docstrings.py`: `python_docstrings`, and `synthetic.py`: `copy`, `reverse`,
  `sort`, `addition`, seq2seq records `{'inputs': str, 'targets': str}` (read
  them with `split_pairs`).

Any other data.name is a TFDS catalogue dataset (`lm1b`, `c4/en`,
`cnn_dailymail`, ...), prepared as ArrayRecord into the same data dir; offline
and unprepared, it fails within seconds and says how to prepare it elsewhere.
Its feature names come from data.text_key / input_key / target_key;
`CATALOGUE_FEATURES` lists the right ones for common datasets.
"""

from collections.abc import Sequence
import contextlib
import fcntl
import io
import os
import re
import socket
import threading

import numpy as np
import tensorflow_datasets as tfds

from lm import errors
from lm.data import corpora
from lm.data import docstrings
from lm.data import local
from lm.data import synthetic

SPLITS = ('train', 'validation', 'test')


def data_dir(config_data_dir: str) -> str:
  """Resolves data.data_dir: '' means $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  path = (config_data_dir or os.environ.get('TFDS_DATA_DIR')
          or '~/tensorflow_datasets')
  return os.path.abspath(os.path.expanduser(path))


# --- TFDS catalogue ----------------------------------------------------------

# Feature keys of common catalogue datasets: pass them as data.text_key (LM) or
# data.input_key / data.target_key (seq2seq). A key 'a+b' joins features a and
# b with a newline, 'a/b' reads b inside a, and a list-valued feature gives its
# first item (squad's first answer). A key with braces is a template: each
# {key} is replaced by that feature ('question: {question} context: {context}',
# T5's squad input). Looked up by full name, then by the name before '/':
# 'c4/en' -> 'c4'.
CATALOGUE_FEATURES = {
    'lm1b': {'text_key': 'text'},
    'c4': {'text_key': 'text'},
    'wikipedia': {'text_key': 'text'},
    'tiny_shakespeare': {'text_key': 'text'},
    'cnn_dailymail': {'input_key': 'article', 'target_key': 'highlights'},
    'xsum': {'input_key': 'document', 'target_key': 'summary'},
    'gigaword': {'input_key': 'document', 'target_key': 'summary'},
    'squad': {'input_key': 'question: {question} context: {context}',
              'target_key': 'answers/text'},
    'wmt14_translate/de-en': {'input_key': 'de', 'target_key': 'en'},
}
# Probed before downloading: tfds' own bucket, which serves many catalogue
# datasets. Offline, tfds would otherwise retry for minutes.
NETWORK_PROBE = ('storage.googleapis.com', 443)
_PROBE_TIMEOUT_S = 2.0

_DOCUMENT_NAMES = ('shakespeare', 'text_files', 'local')
SEQ2SEQ_NAMES = ('python_docstrings',) + synthetic.SYNTHETIC_TASKS
OUR_NAMES = _DOCUMENT_NAMES + SEQ2SEQ_NAMES


def catalogue_features(name: str) -> dict[str, str]:
  """CATALOGUE_FEATURES' entry for a catalogue name ({} if none)."""
  name = name.split(':')[0]  # drop a ':1.2.3' version.
  return CATALOGUE_FEATURES.get(name) or CATALOGUE_FEATURES.get(
      name.split('/')[0], {})


def network_available(host_port=NETWORK_PROBE,
                      timeout: float = _PROBE_TIMEOUT_S) -> bool:
  """Whether a TCP connection opens within `timeout` seconds, DNS included."""
  result = []

  def connect():
    try:
      socket.create_connection(host_port, timeout=timeout).close()
      result.append(True)
    except OSError:
      pass

  # A thread bounds the name lookup too, which the socket timeout does not.
  thread = threading.Thread(target=connect, daemon=True)
  thread.start()
  thread.join(timeout + 0.5)
  return bool(result)


def _catalogue_builder(name: str, common: dict) -> tfds.core.DatasetBuilder:
  try:
    return tfds.builder(name, **common)
  except tfds.core.registered.DatasetNotFoundError as e:
    first_line = str(e).split('\n')[0]
    raise errors.InputError(
        f'Unknown data.name {name!r}; ours are {list(OUR_NAMES)}, and TFDS '
        f'says: {first_line} (see https://www.tensorflow.org/datasets/catalog '
        'for catalogue names).') from None


def _not_prepared_message(name: str, directory: str) -> str:
  host, port = NETWORK_PROBE
  prepare = (
      'import tensorflow_datasets as tfds; '
      f"tfds.builder('{name}', data_dir='DIR', file_format='array_record')"
      '.download_and_prepare(download_config=tfds.download.DownloadConfig('
      'compute_stats=tfds.download.ComputeStatsMode.SKIP))')
  return (
      f'TFDS catalogue dataset {name!r} is not prepared in {directory}, and '
      f'this machine is offline ({host}:{port} could not be reached within '
      f'{_PROBE_TIMEOUT_S:g} s), so it cannot be downloaded here.\n'
      'On a machine with network, prepare it as ArrayRecord:\n'
      f'  python -c "{prepare}"\n'
      f'(or: tfds build {name} --data_dir=DIR --file_format=array_record)\n'
      f'then copy DIR to this machine and pass --config.data.data_dir=DIR '
      f'(or copy its contents into {directory}).')


def make_builder(data_config) -> tfds.core.DatasetBuilder:
  """The (maybe unprepared) builder data_config names; its data_path is unique."""
  common = dict(data_dir=data_dir(data_config.data_dir),
                file_format=tfds.core.FileFormat.ARRAY_RECORD)
  name = data_config.name
  if name == 'shakespeare':
    return corpora.Shakespeare(source_dir=data_config.source_dir, **common)
  if name == 'text_files':
    return corpora.TextFiles(
        config=corpora.text_files_config(data_config.path), **common)
  if name == 'local':
    return local.Local(config=local.local_config(data_config, common['data_dir']),
                       skip_bad_records=data_config.skip_bad_records, **common)
  if name == 'python_docstrings':
    return docstrings.PythonDocstrings(config=docstrings.docstrings_config(
        data_config.docstrings_site_packages), **common)
  if name in synthetic.SYNTHETIC_TASKS:
    return synthetic.Synthetic(
        config=synthetic.synthetic_config(data_config), **common)
  return _catalogue_builder(name, common)


def prepare(data_config) -> tfds.core.DatasetBuilder:
  """The builder of data_config's dataset, prepared into the data dir once.

  Ours are prepared here. A catalogue dataset is downloaded and prepared only
  if the network answers; offline it raises at once, saying how to get it.
  Processes preparing the same dataset at once (a sweep's parallel runs) take
  turns on a lock file beside it: the first prepares, the others then read.
  """
  builder = make_builder(data_config)
  if not builder.is_prepared():
    os.makedirs(os.path.dirname(builder.data_dir), exist_ok=True)
    with open(builder.data_dir.rstrip('/') + '.lock', 'a') as lock:
      fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes.
      builder = make_builder(data_config)  # What the process before us prepared.
      if not builder.is_prepared():
        _download_and_prepare(builder, data_config)
  if isinstance(builder, local.Local):
    local.check_skipped(builder, data_config.skip_bad_records)
  return builder


def _download_and_prepare(builder: tfds.core.DatasetBuilder, data_config) -> None:
  if data_config.name not in OUR_NAMES and not network_available():
    raise errors.OfflineError(_not_prepared_message(
        data_config.name, data_dir(data_config.data_dir)))
  ours = data_config.name in OUR_NAMES
  if ours:  # Written in seconds; tfds' "Downloading ... Unknown size" and progress bars would be noise.
    print(f'preparing data.name={data_config.name!r} once, into {builder.data_dir}', flush=True)
    tfds.display_progress_bar(False)
  try:
    with contextlib.redirect_stdout(io.StringIO()) if ours else contextlib.nullcontext():
      builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
          # Statistics would need TensorFlow; the pipeline needs none.
          compute_stats=tfds.download.ComputeStatsMode.SKIP))
  finally:
    tfds.display_progress_bar(True)


def load_split(data_config, split: str):
  """Random-access source of split's records (dicts of bytes); prepares the dataset first (`prepare`)."""
  if split not in SPLITS:
    raise errors.InputError(f'Unknown split {split!r}; choose one of {list(SPLITS)}.')
  builder = prepare(data_config)
  if split not in builder.info.splits:  # e.g. lm1b has no validation split.
    raise errors.InputError(f'{data_config.name!r} has no split {split!r}; it has '
                     f'{sorted(builder.info.splits)}.')
  return builder.as_data_source(split=split)


def _as_str(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else str(value)


def _feature(record: dict, key: str, data_config, config_key: str) -> str:
  """record[key] as str; key may be 'a+b' (joined), 'a/b' (nested) or a
  template 'text {a} text {b/c}'."""
  if '{' in key:
    return re.sub(r'\{([^{}]*)\}', lambda match: _feature(
        record, match.group(1), data_config, config_key), key)
  parts = []
  for path in key.split('+'):
    value = record
    for step in path.split('/'):
      if not isinstance(value, dict) or step not in value:
        suggestion = catalogue_features(data_config.name)
        raise errors.InputError(
            f'data.{config_key}={key!r}: {data_config.name!r} records have no '
            f'feature {step!r}; they have '
            f'{sorted(value) if isinstance(value, dict) else type(value)}'
            + (f'. Known keys for it: {suggestion}' if suggestion else '.'))
      value = value[step]
    if isinstance(value, (list, tuple, np.ndarray)):
      value = value[0] if len(value) else ''
    parts.append(_as_str(value))
  return '\n'.join(parts)


def _records(source) -> list[dict]:
  return read_records(source, range(len(source)))


def read_records(source, indices: Sequence[int]) -> list[dict]:
  """The records of `source` at `indices`: one batched read where the source has one (10x faster than indexing
  record by record)."""
  if not len(indices):
    return []
  if not hasattr(source, '__getitems__'):
    return [source[i] for i in indices]
  return list(source.__getitems__(list(indices)))


# Records a streamed pass reads at once (RecordsAt): one batched read of 64 took 36 us a record against 270 us for
# reads one by one (a 200k-document jsonl corpus converted to ArrayRecord, 2-core Intel Xeon), which capped the
# records per second of short ones.
READ_GROUP = 64


class RecordsAt:
  """indices -> the records of `source` at them, in one batched read (read_records): a grain map over groups of
  record indices."""

  def __init__(self, source):
    self._source = source

  def __call__(self, indices) -> list[dict]:
    return read_records(self._source, [int(i) for i in indices])


def split_texts(data_config, split: str) -> list[str]:
  """The documents of `split`, in record order, as str.

  Ours read 'text'; a catalogue dataset reads data.text_key. A seq2seq dataset
  gives each record's input, then its target: text for tokenizers to learn.
  """
  return [text for r in _records(load_split(data_config, split)) for text in record_texts(r, data_config)]


def record_texts(record: dict, data_config) -> list[str]:
  """The texts of one record, as `split_texts` reads them."""
  if data_config.name in _DOCUMENT_NAMES:
    return [_as_str(record['text'])]
  if data_config.name in SEQ2SEQ_NAMES:
    return [_as_str(record[k]) for k in ('inputs', 'targets')]
  return [_feature(record, data_config.text_key, data_config, 'text_key')]


def split_pairs(data_config, split: str) -> list[tuple[str, str]]:
  """(input, target) of each record of a seq2seq dataset, in record order.

  Ours read 'inputs' / 'targets'; a catalogue dataset reads data.input_key /
  data.target_key (see CATALOGUE_FEATURES).
  """
  if data_config.name in _DOCUMENT_NAMES:
    raise errors.InputError(f'{data_config.name!r} holds documents, not pairs; read '
                     'it with split_texts.')
  return [pair(r, data_config)
          for r in _records(load_split(data_config, split))]


def pair(record: dict, data_config) -> tuple[str, str]:
  """(input, target) of one seq2seq record, as `split_pairs` reads them."""
  if data_config.name in SEQ2SEQ_NAMES:
    return _as_str(record['inputs']), _as_str(record['targets'])
  return (_feature(record, data_config.input_key, data_config, 'input_key'),
          _feature(record, data_config.target_key, data_config, 'target_key'))
