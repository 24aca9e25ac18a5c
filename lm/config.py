"""The one schema of every config key (see `defaults`), and `check`, which makes every config error."""
from typing import Any


class ConfigError(ValueError):
  """A config key holds a value the code cannot use; the message names the key, the value and why."""


def check(ok: bool, key: str, value: Any, why: str) -> None:
  """Raises ConfigError('KEY=VALUE WHY') unless `ok`: the one form of every config error."""
  if not ok:
    raise ConfigError(f'{key}={value!r} {why}')
