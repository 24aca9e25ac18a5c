"""conftest.py's rule: under CI=true a skip fails, except a backend-marked test's on another backend."""
import pathlib

# Imported once here: pytester's in-process runs drop the modules they import, and JAX aborts on a re-import.
import jax  # noqa: F401

pytest_plugins = ['pytester']

_TESTS = '''
import pytest

def test_needs_a_download():
  pytest.skip('could not download')

@pytest.mark.backend('no_such_backend')
def test_needs_other_hardware():
  pass

@pytest.mark.backend('cpu')
def test_runs_on_cpu():
  pass

@pytest.mark.xfail(reason='a known bug', strict=True)
def test_known_bug():
  assert False
'''


def _outcomes(pytester, monkeypatch, ci):
  monkeypatch.setenv('CI', ci)
  pytester.makeconftest(pathlib.Path(__file__).with_name('conftest.py').read_text())
  pytester.makepyfile(_TESTS)
  return pytester.runpytest('-p', 'no:cacheprovider').parseoutcomes()


def test_skips_stay_skips_outside_ci(pytester, monkeypatch):
  assert _outcomes(pytester, monkeypatch, 'false') == {'passed': 1, 'skipped': 2, 'xfailed': 1}


def test_ci_fails_a_skip_but_not_a_hardware_skip(pytester, monkeypatch):
  outcomes = _outcomes(pytester, monkeypatch, 'true')
  assert outcomes == {'passed': 1, 'failed': 1, 'skipped': 1, 'xfailed': 1}
