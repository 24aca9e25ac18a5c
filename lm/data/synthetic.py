"""Synthetic digit-string seq2seq tasks: `copy`, `reverse`, `sort`, `addition`.

Records are `{'inputs': str, 'targets': str}`, keyed by task,
data.synthetic_length and data.synthetic_examples.
"""

import dataclasses

import numpy as np
import tensorflow_datasets as tfds

from lm import errors
from lm.config import check

SYNTHETIC_TASKS = ('copy', 'reverse', 'sort', 'addition')
# One seed per split, so validation and test are fresh draws, never a slice
# of train (for short lengths, equal strings still recur by chance).
_SYNTHETIC_SEEDS = {'train': 0, 'validation': 1, 'test': 2}
_EVAL_FRACTION = 10  # validation and test each hold examples // 10.


@dataclasses.dataclass(eq=False)
class SyntheticConfig(tfds.core.BuilderConfig):
  task: str = 'copy'
  length: int = 12  # digits per operand.
  examples: int = 100_000  # training examples.


def synthetic_config(data_config) -> SyntheticConfig:
  task = data_config.name
  length = data_config.synthetic_length
  examples = data_config.synthetic_examples
  check(length >= 1, 'data.synthetic_length', length, 'must be >= 1')
  check(examples >= _EVAL_FRACTION, 'data.synthetic_examples', examples,
        f'must be >= {_EVAL_FRACTION} (eval splits hold 1/{_EVAL_FRACTION})')
  # The name is the data's identity: change any part and it is prepared anew.
  return SyntheticConfig(name=f'{task}_len{length}_n{examples}', task=task,
                         length=length, examples=examples)


class Synthetic(tfds.core.GeneratorBasedBuilder, skip_registration=True):
  """Digit-string seq2seq tasks generated with numpy; see synthetic_pairs."""

  VERSION = tfds.core.Version('1.0.0')

  def _info(self) -> tfds.core.DatasetInfo:
    text = tfds.features.Text()
    return tfds.core.DatasetInfo(
        builder=self, disable_shuffling=True,  # already in random order.
        features=tfds.features.FeaturesDict({'inputs': text, 'targets': text}))

  def _split_generators(self, dl_manager):
    del dl_manager
    c = self.builder_config
    sizes = {'train': c.examples, 'validation': c.examples // _EVAL_FRACTION,
             'test': c.examples // _EVAL_FRACTION}
    return {split: self._generate_examples(*synthetic_pairs(
        c.task, c.length, n, seed=_SYNTHETIC_SEEDS[split]))
            for split, n in sizes.items()}

  def _generate_examples(self, inputs: list[str], targets: list[str]):
    for i, (x, y) in enumerate(zip(inputs, targets)):
      yield i, {'inputs': x, 'targets': y}


def synthetic_pairs(task: str, length: int, num: int,
                    seed: int) -> tuple[list[str], list[str]]:
  """(inputs, targets) of `num` examples, the same for the same arguments.

  copy '3141' -> '3141'; reverse '3141' -> '1413'; sort '3141' -> '1134';
  addition '3141+2718' -> '5859', both operands `length` digits without a
  leading zero, the sum without one.
  """
  if task not in SYNTHETIC_TASKS:
    raise errors.InputError(f'Unknown synthetic task {task!r}; choose one of '
                     f'{list(SYNTHETIC_TASKS)}.')
  rng = np.random.default_rng(seed)
  digits = rng.integers(0, 10, size=(num, length), dtype=np.uint8)
  if task == 'addition':
    other = rng.integers(0, 10, size=(num, length), dtype=np.uint8)
    digits[:, 0] = rng.integers(1, 10, size=num, dtype=np.uint8)
    other[:, 0] = rng.integers(1, 10, size=num, dtype=np.uint8)
    inputs = [f'{a}+{b}' for a, b in zip(_digit_strings(digits),
                                           _digit_strings(other))]
    total = _add(digits, other)
    # Only the carry digit can be 0: both operands are >= 10**(length - 1).
    targets = [t[1:] if t[0] == '0' else t for t in _digit_strings(total)]
    return inputs, targets
  if task == 'copy':
    result = digits
  elif task == 'reverse':
    result = digits[:, ::-1]
  else:
    result = np.sort(digits, axis=1)
  return _digit_strings(digits), _digit_strings(result)


def _digit_strings(digits: np.ndarray) -> list[str]:
  """Rows of digits 0-9 -> strings, vectorised through a bytes view."""
  chars = np.ascontiguousarray(digits + ord('0'), dtype=np.uint8)
  return chars.view(f'S{digits.shape[1]}').ravel().astype(str).tolist()


def _add(a: np.ndarray, b: np.ndarray) -> np.ndarray:
  """Digit-wise sum of two [N, L] digit arrays -> [N, L + 1]; any length."""
  total = np.zeros((a.shape[0], a.shape[1] + 1), np.uint8)
  carry = np.zeros(a.shape[0], np.uint8)
  for col in range(a.shape[1] - 1, -1, -1):  # loops over digits, not rows.
    column = a[:, col] + b[:, col] + carry
    total[:, col + 1] = column % 10
    carry = column // 10
  total[:, 0] = carry
  return total
