"""The code passes `ruff check` with pyproject.toml's rules (unused imports and names, likely bugs, import order)."""
import importlib.util
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CHECKED = ('lm', 'tests', 'bench', 'experiments')


def test_ruff_check_finds_nothing():
  if importlib.util.find_spec('ruff') is None:
    message = 'ruff is not installed in this interpreter (pip install ruff, or pip install -e .[test])'
    if os.environ.get('CI', '').lower() in ('1', 'true', 'yes'):
      pytest.fail(f'CI={os.environ["CI"]}: {message}')  # CI must lint, not skip.
    pytest.skip(message)
  # --no-cache: nothing written into the checkout, and parallel runs do not share a cache.
  command = [sys.executable, '-m', 'ruff', 'check', '--no-cache', '--output-format=concise', *CHECKED]
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=120)
  if result.returncode != 0:
    pytest.fail(f'ruff check {" ".join(CHECKED)} exited {result.returncode} (`ruff check --fix` mends the '
                f'findings marked [*]):\n{result.stdout}{result.stderr}', pytrace=False)
