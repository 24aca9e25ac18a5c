"""Default experiment: a character-level GPT on the complete works of Shakespeare.

Run:      ./run.sh train            (same as --config=experiments/shakespeare.py --workdir=runs/shakespeare)
Hardware: 2 CPU cores, no accelerator.
Time:     under 10 minutes, data preparation and the final sample included.
Expect:   validation bits per byte <= 2.4 (the README gives the measured figure).
"""
from experiments import base


def get_config():
  c = base.get_config()
  return c
