"""Tokenizers: one interface (`Tokenizer`) over char and byte vocabularies.

Every tokenizer reserves id 0 for padding and id 1 for end-of-sequence, so the
data pipeline and the loss can treat special ids alike whatever the vocabulary.
`token_bytes[i]` is how many UTF-8 bytes token i stands for; summing it over
the targets gives the exact byte count that bits-per-byte divides by.

SentencePiece joins as a third class with the same attributes, registered in
`_BUILDERS` (train from texts) and `_LOADERS` (read from a saved directory).
"""

import json
import os
from typing import Callable, Iterable, Protocol

import numpy as np

PAD_ID = 0
EOS_ID = 1
_NUM_SPECIAL = 2  # pad and eos come before the first real token.
_FILENAME = 'tokenizer.json'


class Tokenizer(Protocol):
  vocab_size: int
  pad_id: int
  eos_id: int
  token_bytes: np.ndarray  # int32 [vocab_size]; 0 for pad and eos.

  def encode(self, text: str) -> np.ndarray:
    """Returns int32 [n] ids; no eos appended."""

  def decode(self, ids) -> str:
    """Returns the text of `ids`, skipping pad and eos."""

  def to_dict(self) -> dict:
    """Returns the JSON-able description `save` writes; also a content key."""

  def save(self, directory: str) -> None:
    """Writes the tokenizer into `directory` (created if missing)."""


def _save_json(directory: str, spec: dict) -> None:
  os.makedirs(directory, exist_ok=True)
  path = os.path.join(directory, _FILENAME)
  # Write then rename: every process of a multi-host run may save the same
  # tokenizer, and no reader may see a half-written file.
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'w', encoding='utf-8') as f:
    json.dump(spec, f, ensure_ascii=False)
  os.replace(tmp, path)


class CharTokenizer:
  """One id per Unicode character seen when the vocabulary was built.

  >>> tok = CharTokenizer('ab\\n')   # ids: pad 0, eos 1, '\\n' 2, 'a' 3, 'b' 4
  >>> tok.encode('ba').tolist()
  [4, 3]
  """

  pad_id = PAD_ID
  eos_id = EOS_ID

  def __init__(self, chars: str):
    chars = ''.join(sorted(set(chars)))
    if not chars:
      raise ValueError('CharTokenizer needs at least one character; got none.')
    self.chars = chars
    self.vocab_size = len(chars) + _NUM_SPECIAL
    code_points = np.frombuffer(chars.encode('utf-32-le'), dtype=np.uint32)
    # A dense code point -> id table makes encode one numpy gather. Its size is
    # at most 0x110000 entries (4.4 MB) even for a vocabulary that reaches the
    # top of Unicode; -1 marks characters outside the vocabulary.
    self._ids = np.full(int(code_points.max()) + 1, -1, dtype=np.int32)
    self._ids[code_points] = np.arange(
        _NUM_SPECIAL, self.vocab_size, dtype=np.int32)
    self._chars = np.array(['', ''] + list(chars), dtype=object)
    self.token_bytes = np.array(
        [0, 0] + [len(c.encode('utf-8', 'surrogatepass')) for c in chars],
        dtype=np.int32)

  def encode(self, text: str) -> np.ndarray:
    code_points = np.frombuffer(
        text.encode('utf-32-le', 'surrogatepass'), dtype=np.uint32)
    in_table = code_points < len(self._ids)
    ids = np.where(
        in_table, self._ids[np.where(in_table, code_points, 0)], -1)
    unknown = np.flatnonzero(ids < 0)
    if unknown.size:
      pos = int(unknown[0])
      raise ValueError(
          f'Character {text[pos]!r} at position {pos} is not in the char '
          f'vocabulary ({len(self.chars)} characters); build the tokenizer '
          'from texts that contain it.')
    return ids.astype(np.int32)

  def decode(self, ids) -> str:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(
          f'Ids must lie in [0, {self.vocab_size}); got range '
          f'[{ids.min()}, {ids.max()}].')
    return ''.join(self._chars[ids])  # pad and eos map to ''.

  def to_dict(self) -> dict:
    return {'kind': 'char', 'chars': self.chars}

  def save(self, directory: str) -> None:
    _save_json(directory, self.to_dict())


class ByteTokenizer:
  """One id per UTF-8 byte: byte b is id b + 2; covers any text, vocab 258."""

  pad_id = PAD_ID
  eos_id = EOS_ID
  vocab_size = 256 + _NUM_SPECIAL

  def __init__(self):
    self.token_bytes = np.array([0, 0] + [1] * 256, dtype=np.int32)

  def encode(self, text: str) -> np.ndarray:
    data = np.frombuffer(text.encode('utf-8'), dtype=np.uint8)
    return data.astype(np.int32) + _NUM_SPECIAL

  def decode(self, ids) -> str:
    ids = np.asarray(ids, dtype=np.int64).reshape(-1)
    if ids.size and (ids.min() < 0 or ids.max() >= self.vocab_size):
      raise ValueError(
          f'Ids must lie in [0, {self.vocab_size}); got range '
          f'[{ids.min()}, {ids.max()}].')
    data = (ids[ids >= _NUM_SPECIAL] - _NUM_SPECIAL).astype(np.uint8)
    # A sampled sequence may cut a multi-byte character; show it, don't fail.
    return data.tobytes().decode('utf-8', errors='replace')

  def to_dict(self) -> dict:
    return {'kind': 'byte'}

  def save(self, directory: str) -> None:
    _save_json(directory, self.to_dict())


def _build_char(texts: Iterable[str]) -> CharTokenizer:
  chars = set()
  for text in texts:
    chars.update(text)
  return CharTokenizer(''.join(chars))


_BUILDERS: dict[str, Callable[[Iterable[str]], Tokenizer]] = {
    'char': _build_char,
    'byte': lambda texts: ByteTokenizer(),
}
_LOADERS: dict[str, Callable[[dict], Tokenizer]] = {
    'char': lambda spec: CharTokenizer(spec['chars']),
    'byte': lambda spec: ByteTokenizer(),
}


def make_tokenizer(kind: str, texts: Iterable[str]) -> Tokenizer:
  """Builds a tokenizer of `kind` ('char' | 'byte') whose vocab covers `texts`."""
  if kind not in _BUILDERS:
    raise ValueError(
        f'Unknown tokenizer kind {kind!r}; choose one of {sorted(_BUILDERS)}.')
  return _BUILDERS[kind](texts)


def load_tokenizer(directory: str) -> Tokenizer:
  """Loads a tokenizer that `Tokenizer.save(directory)` wrote."""
  path = os.path.join(directory, _FILENAME)
  if not os.path.exists(path):
    raise FileNotFoundError(f'No tokenizer at {path!r}.')
  with open(path, encoding='utf-8') as f:
    spec = json.load(f)
  kind = spec.get('kind')
  if kind not in _LOADERS:
    raise ValueError(
        f'{path!r} holds unknown tokenizer kind {kind!r}; '
        f'known: {sorted(_LOADERS)}.')
  return _LOADERS[kind](spec)
