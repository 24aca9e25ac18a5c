"""`python_docstrings`: summarization pairs from the installed standard library.

Records are `{'inputs': str, 'targets': str, 'module': str, 'name': str}`: a
function's or class's signature and docstring body -> the docstring's one-line
summary. Split by top-level module, so no module (and no package) sits in two
splits. Keyed by the Python version.

With data.docstrings_site_packages the train split also holds the pairs of the
installed third-party packages (site-packages: ~19k pairs in this project's
environment, 10x the standard library's train split); validation and test
stay the standard library's, and a third-party pair that repeats one of theirs,
or comes from a module named like one of their top-level modules (a vendored
copy such as setuptools.glob), is left out. Keyed also by the installed
distributions and their versions, so another environment prepares its own.
"""

import ast
import dataclasses
import hashlib
import os
import re
import sys
import sysconfig

import tensorflow_datasets as tfds

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
  site_packages: str = ''  # if set, its packages' pairs join the train split.


def docstrings_config(site_packages: bool = False) -> DocstringsConfig:
  # Each Python version ships a different standard library, so its own data.
  major, minor = sys.version_info[:2]
  name = f'py{major}_{minor}'
  directory = ''
  if site_packages:
    directory = sysconfig.get_paths()['purelib']
    name += '_site_' + installed_distributions_hash(directory)
  return DocstringsConfig(name=name, stdlib=sysconfig.get_paths()['stdlib'],
                          site_packages=directory)


def installed_distributions_hash(site_packages: str) -> str:
  """8 hex digits naming the distributions (and versions) installed there."""
  names = sorted(d for d in os.listdir(site_packages)
                 if d.endswith('.dist-info'))
  return hashlib.sha256('\n'.join(names).encode()).hexdigest()[:8]


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
    if self.builder_config.site_packages:
      splits['train'] += site_package_records(
          self.builder_config.site_packages, held_out=splits['validation'] +
          splits['test'], seen={(r['inputs'], r['targets'])
                                for records in splits.values()
                                for r in records})
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


def _parsed(path: str) -> ast.AST | None:
  try:
    with open(path, 'rb') as f:
      return ast.parse(f.read(), filename=path)
  except (SyntaxError, ValueError):  # e.g. a broken test fixture.
    return None


def site_package_records(site_packages: str, *, held_out: list[dict],
                         seen: set) -> list[dict]:
  """The pairs of every package installed in `site_packages`, in package
  order, that are not in `seen` (updated) and not copies of `held_out` ones."""
  held_inputs = {r['inputs'] for r in held_out}
  held_targets = {r['targets'] for r in held_out}
  held_modules = {r['module'].split('.')[0] for r in held_out}
  records = []
  for top in sorted(os.listdir(site_packages)):
    directory = os.path.join(site_packages, top)
    if (not os.path.isdir(directory) or not top.isidentifier()
        or top.startswith('__')):  # *.dist-info, __pycache__, ...
      continue
    for module, path in stdlib_modules(directory):
      module = f'{top}.{module}' if module else top
      if module.split('.')[-1] in held_modules:
        continue
      tree = _parsed(path)
      for record in docstring_pairs(tree, module) if tree else []:
        key = (record['inputs'], record['targets'])
        if (key in seen or record['inputs'] in held_inputs
            or record['targets'] in held_targets):
          continue
        seen.add(key)
        records.append(record)
  return records


def stdlib_records(stdlib: str) -> list[dict]:
  """Every module's docstring pairs, in module order, without duplicates.

  A pair seen before (same inputs and targets: `bz2` and `lzma` share method
  docstrings, as do `_py_abc` and `abc`) is kept only in its first module, so
  a duplicate never sits in two splits (30 pairs in Python 3.11).
  """
  records, seen = [], set()
  for module, path in stdlib_modules(stdlib):
    tree = _parsed(path)
    for record in docstring_pairs(tree, module) if tree else []:
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
  # The buckets name datasets.SPLITS in order; importing it here would cycle.
  splits = {split: [] for split, _ in _DOCSTRING_SPLIT_BUCKETS}
  for record in records:
    splits[docstring_split(record['module'])].append(record)
  return splits
