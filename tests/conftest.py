"""Fakes 8 CPU devices before JAX starts, so data- and model-parallel code runs in every test.

Under CI=true a skipped test fails: there a skip means a missing dependency, service or download, which would
hide the test it skips. The one skip that stays a skip is a test marked `@pytest.mark.backend('cpu')` run on
another JAX backend: it is about the machine's hardware, which no CI setup step can install.
"""
import os

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=8').strip()

from absl import flags  # noqa: E402
import pytest  # noqa: E402

flags.FLAGS.mark_as_parsed()  # grain's worker processes read absl flags.

_HARDWARE_SKIP = 'wrong backend:'  # Starts the reason of the skips that stay skips under CI=true.


def pytest_configure(config):
  config.addinivalue_line('markers', 'backend(name): runs only on that JAX backend (e.g. cpu); skipped on the '
                          'others, also under CI=true')


def pytest_runtest_setup(item):
  marker = item.get_closest_marker('backend')
  if marker is not None:
    import jax  # Here, not at the top: XLA_FLAGS must be set before JAX starts.
    if jax.default_backend() != marker.args[0]:
      pytest.skip(f'{_HARDWARE_SKIP} needs {marker.args[0]}, running on {jax.default_backend()}')


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
  outcome = yield
  report = outcome.get_result()
  if os.environ.get('CI') != 'true' or not report.skipped or hasattr(report, 'wasxfail'):
    return
  reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
  if reason.removeprefix('Skipped: ').startswith(_HARDWARE_SKIP):
    return
  report.outcome = 'failed'
  report.longrepr = f'skipped under CI=true, where every dependency, service and download must be there: {reason}'
