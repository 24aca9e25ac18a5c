"""The Shakespeare scaling study again with seed 1: does the fit reproduce with other initialisations and data orders?

Run:      ./run.sh sweep experiments/studies/shakespeare_scaling_seed1.py  (runs/shakespeare_scaling_seed1/)
Compare:  notebooks/scaling_laws.ipynb fits both sweep directories (README: A study, "Another seed").
Identical to experiments/studies/shakespeare_scaling.py but for `seed` (init, data shuffle, dropout).
"""
import importlib.util
import os

_SPEC = importlib.util.spec_from_file_location(
    'shakespeare_scaling', os.path.join(os.path.dirname(os.path.abspath(__file__)), 'shakespeare_scaling.py'))
_BASE = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_BASE)


def get_study():
  study = _BASE.get_study()
  study['fixed'] = {**study['fixed'], 'seed': 1}
  return study
