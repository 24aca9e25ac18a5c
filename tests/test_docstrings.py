"""python_docstrings splits by module and pairs summaries with their source."""

import ast
import hashlib
import os
import sys
import sysconfig

import ml_collections
import pytest

from experiments import base
from lm.data import datasets
from lm.data import docstrings as docstrings_lib


def _full_data_config(data_dir, **overrides) -> ml_collections.ConfigDict:
  """base.py's data config: the new builders read only declared keys."""
  config = base.get_config().data
  config.data_dir = str(data_dir)
  config.update(overrides)
  return config


@pytest.fixture(scope='module')
def docstrings(tmp_path_factory):
  """The real stdlib corpus, prepared once: (config, {split: records})."""
  config = _full_data_config(tmp_path_factory.mktemp('tfds'),
                             name='python_docstrings')
  records = {}
  for split in datasets.SPLITS:
    source = datasets.load_split(config, split)
    records[split] = [{k: v.decode() for k, v in source[i].items()}
                      for i in range(len(source))]
  return config, records


def test_docstring_splits_share_no_module(docstrings):
  _, records = docstrings
  sizes = {split: len(records[split]) for split in datasets.SPLITS}
  # Python 3.11: 1953 / 84 / 223. Other versions differ a little.
  assert sizes['train'] > 1000, sizes
  assert sizes['validation'] >= 20 and sizes['test'] >= 20, sizes
  assert sizes['train'] > sizes['validation'] + sizes['test'], sizes
  tops = {split: {r['module'].split('.')[0] for r in records[split]}
          for split in datasets.SPLITS}
  assert not tops['train'] & tops['validation']
  assert not tops['train'] & tops['test']
  assert not tops['validation'] & tops['test']
  # Modules of one package stay together, and tests stay out.
  every = [r for split in datasets.SPLITS for r in records[split]]
  assert {'email', 'asyncio', 'json'} <= {m for t in tops.values() for m in t}
  assert not any(r['module'].split('.')[0] in ('test', 'idlelib', 'lib2to3')
                 or '.test' in r['module'] for r in every)
  pairs = [(r['inputs'], r['targets']) for r in every]
  assert len(pairs) == len(set(pairs))


def test_docstring_records_are_summaries_of_their_source(docstrings):
  config, records = docstrings
  every = {(r['module'], r['name']): r
           for split in datasets.SPLITS for r in records[split]}
  dedent = every['textwrap', 'dedent']
  assert dedent['targets'] == (
      'Remove any common leading whitespace from every line in `text`.')
  assert dedent['inputs'].startswith('def dedent(text)\nThis can be used to')
  # Against the source, for records of every split.
  stdlib = docstrings_lib.docstrings_config().stdlib
  for split in datasets.SPLITS:
    for record in records[split][::max(1, len(records[split]) // 15)]:
      node = _find(stdlib, record['module'], record['name'])
      lines = ast.get_docstring(node).split('\n')
      assert record['targets'] == lines[0].strip()
      assert lines[1].strip() == ''
      assert record['inputs'].split('\n')[0] == docstrings_lib.signature(node)
      assert record['inputs'].startswith(('def ', 'async def ', 'class '))
      assert record['targets'] not in record['inputs']
      assert len(record['targets'].split()) >= 3
  assert datasets.split_pairs(config, 'test') == [
      (r['inputs'], r['targets']) for r in records['test']]


def _find(stdlib, module, name):
  """The def or class `name` ('Class.method') in `module`'s source."""
  path = os.path.join(stdlib, *module.split('.'))
  path = path + '.py' if os.path.isfile(path + '.py') else os.path.join(
      path, '__init__.py')
  with open(path, 'rb') as f:
    node = ast.parse(f.read())
  defs = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
  for part in name.split('.'):
    # Breadth-first through plain statements: defs may sit in if blocks.
    queue, found = [node], None
    while queue and found is None:
      for child in ast.iter_child_nodes(queue.pop(0)):
        if isinstance(child, defs) and child.name == part:
          found = child
          break
        if isinstance(child, ast.stmt) and not isinstance(child, defs):
          queue.append(child)
    assert found is not None, (module, name)
    node = found
  return node


def test_docstring_pairs_keep_only_summarised_bodies():
  source = """
class Shape(Base, metaclass=Meta):
    '''Describe a shape on the plane.

    Holds its corners and knows how to draw itself.
    '''
    def area(self, *, unit: str = 'm') -> float:
        '''Compute the enclosed area.

        Sums the signed areas of the triangles of a fan.
        '''
    def short(self):
        '''Return the short name.

        Brief.
        '''
    def few(self):
        '''Return it.

        A body long enough to keep, were the summary longer.
        '''
    def two_line_summary(self):
        '''Return the first half
        of a summary that runs on.

        A body long enough to keep, were the summary one line.
        '''
    def echo(self):
        '''Draw the shape now.

        The summary repeats here: Draw the shape now.
        '''
    def sig(self):
        '''sig(self, width=1) -> None

        A C-style signature line instead of a summary.
        '''
if True:
    async def fetch(url):
        '''Fetch the url from afar.

        Waits for the whole body before it returns.
        '''
"""
  records = docstrings_lib.docstring_pairs(ast.parse(source), 'pkg.shapes')
  assert records == [
      {'inputs': 'class Shape(Base, metaclass=Meta)\n'
                 'Holds its corners and knows how to draw itself.',
       'targets': 'Describe a shape on the plane.', 'module': 'pkg.shapes',
       'name': 'Shape'},
      {'inputs': "def area(self, *, unit: str='m') -> float\n"
                 'Sums the signed areas of the triangles of a fan.',
       'targets': 'Compute the enclosed area.', 'module': 'pkg.shapes',
       'name': 'Shape.area'},
      {'inputs': 'async def fetch(url)\n'
                 'Waits for the whole body before it returns.',
       'targets': 'Fetch the url from afar.', 'module': 'pkg.shapes',
       'name': 'fetch'},
  ]


def test_docstring_split_is_by_top_level_module():
  assert docstrings_lib.docstring_split('email.mime.text') == (
      docstrings_lib.docstring_split('email'))
  splits = [docstrings_lib.docstring_split(f'module{i}') for i in range(2000)]
  shares = [splits.count(s) / len(splits) for s in datasets.SPLITS]
  assert shares == pytest.approx([0.8, 0.1, 0.1], abs=0.03)


def test_docstring_builder_is_keyed_by_python_version(tmp_path):
  builder = datasets.make_builder(
      _full_data_config(tmp_path, name='python_docstrings'))
  major, minor = sys.version_info[:2]
  assert builder.builder_config.name == f'py{major}_{minor}'
  assert f'py{major}_{minor}' in str(builder.data_path)


def _write(path, text: str) -> None:
  path.parent.mkdir(parents=True, exist_ok=True)
  path.write_text(text)


def _documented(name: str, summary: str) -> str:
  return f'def {name}(x):\n  """{summary}\n\n  A body long enough to be kept.\n  """\n'


def test_site_packages_join_the_train_split_only_without_held_out_copies(tmp_path):
  stdlib, site = tmp_path / 'stdlib', tmp_path / 'site'
  _write(stdlib / 'json.py', _documented('dumps', 'Serialize an object to text.'))  # train
  _write(stdlib / 'glob.py', _documented('glob', 'Return the paths matching a pattern.'))  # validation
  _write(stdlib / 'bisect.py', _documented('insort', 'Insert an item keeping order.'))  # test
  _write(site / 'pkg' / '__init__.py', _documented('run', 'Run the thing now please.')
         + _documented('dumps', 'Serialize an object to text.')  # The same pair as the stdlib's: once.
         + _documented('other', 'Insert an item keeping order.'))  # A test summary: left out.
  _write(site / 'pkg' / 'vendored' / 'glob.py', _documented('walk', 'Walk the paths of a pattern.'))  # Named
  # like a validation module: a vendored copy, left out.
  _write(site / 'pkg' / 'tests' / 'test_x.py', _documented('check', 'Check the thing works fine.'))
  (site / 'pkg-1.0.dist-info').mkdir()
  config = docstrings_lib.DocstringsConfig(name='fake', stdlib=str(stdlib), site_packages=str(site))
  builder = docstrings_lib.PythonDocstrings(config=config, data_dir=str(tmp_path / 'tfds'),
                                            file_format='array_record')
  builder.download_and_prepare()
  summaries = {split: [r['targets'].decode() for r in builder.as_data_source(split=split)]
               for split in datasets.SPLITS}
  assert summaries == {'train': ['Serialize an object to text.', 'Run the thing now please.'],
                       'validation': ['Return the paths matching a pattern.'],
                       'test': ['Insert an item keeping order.']}
  assert builder.as_data_source(split='train')[1]['module'] == b'pkg'


def test_site_packages_data_is_keyed_by_the_installed_distributions(tmp_path, monkeypatch):
  major, minor = sys.version_info[:2]
  assert docstrings_lib.docstrings_config().site_packages == ''
  assert docstrings_lib.docstrings_config(site_packages=True).site_packages == sysconfig.get_paths()['purelib']
  # A site-packages of two distributions and a package folder: the name hashes the sorted .dist-info names.
  site = tmp_path / 'site'
  for name in ('zlib_pkg-2.0.dist-info', 'pkg', 'abc-1.0.dist-info'):
    (site / name).mkdir(parents=True)
  paths = sysconfig.get_paths()
  monkeypatch.setattr(docstrings_lib.sysconfig, 'get_paths', lambda: {**paths, 'purelib': str(site)})
  want = hashlib.sha256(b'abc-1.0.dist-info\nzlib_pkg-2.0.dist-info').hexdigest()[:8]
  assert docstrings_lib.docstrings_config(site_packages=True).name == f'py{major}_{minor}_site_{want}'
  (tmp_path / 'a-1.0.dist-info').mkdir()
  first = docstrings_lib.installed_distributions_hash(str(tmp_path))
  (tmp_path / 'a-1.0.dist-info').rename(tmp_path / 'a-1.1.dist-info')
  assert docstrings_lib.installed_distributions_hash(str(tmp_path)) != first
