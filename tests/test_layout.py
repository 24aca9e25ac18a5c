"""The layout the README draws: each lm module imports only the modules below it (imports inside functions
included), so there is no cycle; the README's layout section lists exactly the modules of the tree."""
import ast
import glob
import os
import re

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# Module -> the lm modules it may import. 'data' stands for any module of lm/data, which may also import each
# other. The arrows go one way: main -> {train, evaluate} -> {step, rundir, generate} -> {model, data, loss,
# optim, parallel, checkpoint, flops, decode} -> {layers, tokenizers} -> {kernels, config, hardware, errors,
# scaling}.
ALLOWED = {
    'errors': set(),  # Every module may import errors (see _modules).
    'config': set(),
    'kernels': set(),
    'hardware': set(),
    'stopping': set(),
    'cluster': set(),  # Standard library only: `./run.sh cluster` runs it before .venv exists.
    'scaling': set(),  # numpy and scipy only: notebooks and the sweep runner call it.
    'layers': {'kernels', 'config'},
    'tokenizers': set(),
    'data': {'tokenizers', 'config', 'data'},
    'loss': set(),
    'optim': {'config'},
    'parallel': {'config'},
    'checkpoint': set(),
    'decode': set(),
    'model': {'layers', 'config', 'hardware'},
    'flops': {'model', 'hardware'},
    'step': {'model', 'loss'},
    'first_start': {'hardware', 'model', 'parallel', 'rundir'},
    'rundir': {'checkpoint', 'config', 'model', 'tokenizers', 'data'},
    'generate': {'config', 'decode', 'model', 'data', 'tokenizers'},  # data: tasks.model_input, numpy only.
    'train': {'step', 'rundir', 'generate', 'data', 'optim', 'parallel', 'checkpoint', 'flops', 'config',
              'hardware', 'stopping', 'first_start'},
    'evaluate': {'generate', 'rundir', 'step', 'data', 'config'},
    'results': {'rundir', 'scaling', 'flops', 'tokenizers'},
    'sweep': {'results', 'rundir', 'config'},
    'hf': {'checkpoint', 'config', 'model', 'rundir', 'tokenizers', 'data'},  # data: tasks.row_lengths.
    'main': {'train', 'evaluate', 'sweep', 'results', 'hf', 'rundir', 'data', 'config', 'flops'},  # flops: `sizes`.
}


def _name(path: str) -> str:
  rel = os.path.relpath(path, os.path.join(REPO, 'lm'))[:-3]
  return 'data' if rel.startswith('data' + os.sep) or rel == 'data' else rel


def _lm_imports(path: str) -> set[str]:
  """The lm modules `path` imports anywhere in it, functions included."""
  found = set()
  for node in ast.walk(ast.parse(open(path).read())):
    if isinstance(node, ast.ImportFrom) and node.module and node.module.split('.')[0] == 'lm':
      parts = node.module.split('.')
      if len(parts) == 1:  # from lm import x
        found |= {alias.name for alias in node.names}
      else:  # from lm.data import x, from lm.x import y
        found.add('data' if parts[1] == 'data' else parts[1])
    elif isinstance(node, ast.Import):
      for alias in node.names:
        parts = alias.name.split('.')
        if parts[0] == 'lm' and len(parts) > 1:
          found.add('data' if parts[1] == 'data' else parts[1])
  return found


def _modules() -> dict[str, set[str]]:
  imports = {}
  for path in glob.glob(os.path.join(REPO, 'lm', '**', '*.py'), recursive=True):
    if os.path.basename(path) == '__init__.py':
      continue
    imports.setdefault(_name(path), set()).update(_lm_imports(path))
  for used in imports.values():  # lm/errors.py imports nothing; every module may raise its errors.
    used.discard('errors')
  return imports


def test_every_module_imports_only_what_is_below_it():
  imports = _modules()
  assert set(imports) == set(ALLOWED), 'a module was added or removed: place it in ALLOWED and the README'
  for module, used in sorted(imports.items()):
    assert used <= ALLOWED[module], f'lm/{module} imports {sorted(used - ALLOWED[module])}, above it'


def test_the_allowed_imports_have_no_cycle():
  seen, done = set(), set()

  def visit(module, path):
    assert module not in seen - done, f'import cycle: {" -> ".join(path + [module])}'
    if module in done:
      return
    seen.add(module)
    for dependency in ALLOWED[module] - {module}:
      visit(dependency, path + [module])
    done.add(module)

  for module in ALLOWED:
    visit(module, [])


def test_the_readme_layout_lists_every_module():
  readme = open(os.path.join(REPO, 'README.md')).read()
  layout = readme.split('## Layout', 1)[1].split('\n## ', 1)[0]
  listed = set(re.findall(r'^(lm/\w+\.py)', layout, re.M))
  data_block = re.search(r'^lm/data/(.*?)^lm/', layout, re.M | re.S).group(1)  # Names its modules by file.
  listed |= {f'lm/data/{name}.py' for name in re.findall(r'\b(\w+)\.py\b', data_block)}
  tree = {os.path.relpath(p, REPO) for p in glob.glob(os.path.join(REPO, 'lm', '**', '*.py'), recursive=True)
          if os.path.basename(p) != '__init__.py'}
  assert listed == tree, f'README layout lacks {sorted(tree - listed)}, lists gone {sorted(listed - tree)}'


def test_no_module_imports_lm_inside_a_function():
  """An import of lm inside a function hides a dependency (or dodges a cycle): every lm import is at the top."""
  for path in glob.glob(os.path.join(REPO, 'lm', '**', '*.py'), recursive=True):
    for function in ast.walk(ast.parse(open(path).read())):
      if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
        for node in ast.walk(function):
          module = node.module if isinstance(node, ast.ImportFrom) else None
          names = [a.name for a in node.names] if isinstance(node, ast.Import) else [module or '']
          assert not any(n == 'lm' or n.startswith('lm.') for n in names), (
              f'{os.path.relpath(path, REPO)}:{node.lineno} imports lm inside {function.name}()')
