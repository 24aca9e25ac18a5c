"""A run directory's own config: its config.json read back as a ConfigDict, also usable as a config file.

`lm/main.py` passes `--config=lm/run_config.py:<workdir>` to the modes that read a run (eval, summarize, translate,
answer) when no --config is given, so that `--config.KEY=VALUE` flags override the run's config:

    python -m lm.main eval --workdir=runs/x --config.eval.split=test
"""
import json
import os

import ml_collections


def _tuples(value):
  """JSON has no tuples: configs hold tuples (mesh_shape, eval.metrics), so lists become tuples again."""
  if isinstance(value, dict):
    return {key: _tuples(item) for key, item in value.items()}
  if isinstance(value, list):
    return tuple(_tuples(item) for item in value)
  return value


def load(workdir: str) -> ml_collections.ConfigDict:
  """The resolved config that `./run.sh train` saved in `workdir`."""
  path = os.path.join(os.path.expanduser(workdir), 'config.json')
  if not os.path.exists(path):
    raise FileNotFoundError(f'{path} not found: is {workdir!r} a run directory made by `./run.sh train`?')
  with open(path) as f:
    return ml_collections.ConfigDict(_tuples(json.load(f)))


def get_config(workdir: str) -> ml_collections.ConfigDict:
  """The config-file entry point (ml_collections passes what follows the ':' of --config=FILE:ARG)."""
  return load(workdir)
