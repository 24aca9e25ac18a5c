"""The default experiment: every config key at its default. `lm/config.py` declares each key once, with its
meaning and allowed values; experiments only override.

Run: ./run.sh train --config=experiments/base.py --workdir=runs/base
"""
from lm import config


def get_config():
  return config.defaults()
