"""Tokenizers: one interface (`Tokenizer`) over char, byte and SentencePiece.

Every tokenizer reserves id 0 for padding and id 1 for end-of-sequence, so the
data pipeline and the loss can treat special ids alike whatever the vocabulary.
`token_bytes[i]` is how many UTF-8 bytes token i stands for; summing it over
the targets gives the exact byte count that bits-per-byte divides by.

Each kind is registered in `_BUILDERS` (built from texts) and `_LOADERS` (read
from a saved directory). Only SentencePiece has sentinel ids for T5 span
corruption; char and byte have `num_sentinels = 0`.
"""

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from typing import Callable, Iterable, Protocol

import numpy as np
import sentencepiece as spm
from sentencepiece import sentencepiece_model_pb2

from lm import errors

PAD_ID = 0
EOS_ID = 1
UNK_ID = 2  # SentencePiece only; byte fallback means encode never emits it.
_NUM_SPECIAL = 2  # pad and eos come before the first real token.
_FILENAME = 'tokenizer.json'
_SPM_FILENAME = 'spm.model'


class Tokenizer(Protocol):
  vocab_size: int
  pad_id: int
  eos_id: int
  token_bytes: np.ndarray  # int32 [vocab_size]; 0 for pad and eos.
  num_sentinels: int  # <extra_id_i> ids for span corruption; may be 0.

  def sentinel_id(self, i: int) -> int:
    """Returns the id of <extra_id_i>; raises ValueError if there is none."""

  def encode(self, text: str) -> np.ndarray:
    """Returns int32 [n] ids; no eos appended."""

  def decode(self, ids) -> str:
    """Returns the text of `ids`, skipping pad and eos."""

  def to_dict(self) -> dict:
    """Returns the JSON-able description `save` writes; also a content key."""

  def save(self, directory: str) -> None:
    """Writes the tokenizer into `directory` (created if missing)."""


def _write_atomic(path: str, data: bytes) -> None:
  os.makedirs(os.path.dirname(path), exist_ok=True)
  # Write then rename: every process of a multi-host run may save the same
  # tokenizer, and no reader may see a half-written file.
  tmp = f'{path}.tmp{os.getpid()}'
  with open(tmp, 'wb') as f:
    f.write(data)
  os.replace(tmp, path)


def _save_json(directory: str, spec: dict) -> None:
  _write_atomic(os.path.join(directory, _FILENAME),
                json.dumps(spec, ensure_ascii=False).encode('utf-8'))


def _no_sentinels(tokenizer, i: int) -> int:
  raise errors.InputError(
      f'The {tokenizer.to_dict()["kind"]!r} tokenizer has no sentinel ids '
      f'(asked for <extra_id_{i}>); span corruption needs '
      "data.tokenizer = 'sentencepiece'.")


def _checked_ids(ids, vocab_size: int) -> np.ndarray:
  """`ids` as a flat int64 array, or a ValueError if any lies outside the vocabulary."""
  ids = np.asarray(ids, dtype=np.int64).reshape(-1)
  if ids.size and (ids.min() < 0 or ids.max() >= vocab_size):
    raise errors.InputError(
        f'Ids must lie in [0, {vocab_size}); got range [{ids.min()}, {ids.max()}].')
  return ids


class CharTokenizer:
  """One id per Unicode character seen when the vocabulary was built.

  >>> tok = CharTokenizer('ab\\n')   # ids: pad 0, eos 1, '\\n' 2, 'a' 3, 'b' 4
  >>> tok.encode('ba').tolist()
  [4, 3]
  """

  pad_id = PAD_ID
  eos_id = EOS_ID
  num_sentinels = 0
  sentinel_id = _no_sentinels

  def __init__(self, chars: str):
    chars = ''.join(sorted(set(chars)))
    if not chars:
      raise errors.InputError('CharTokenizer needs at least one character; got none.')
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
      raise errors.InputError(
          f'Character {text[pos]!r} at position {pos} is not in the char '
          f'vocabulary ({len(self.chars)} characters); build the tokenizer '
          'from texts that contain it.')
    return ids.astype(np.int32)

  def decode(self, ids) -> str:
    ids = _checked_ids(ids, self.vocab_size)
    return ''.join(self._chars[ids])  # pad and eos map to ''.

  def to_dict(self) -> dict:
    return {'kind': 'char', 'chars': self.chars}

  def save(self, directory: str) -> None:
    _save_json(directory, self.to_dict())


class ByteTokenizer:
  """One id per UTF-8 byte: byte b is id b + 2; covers any text, vocab 258."""

  pad_id = PAD_ID
  eos_id = EOS_ID
  num_sentinels = 0
  sentinel_id = _no_sentinels
  vocab_size = 256 + _NUM_SPECIAL

  def __init__(self):
    self.token_bytes = np.array([0, 0] + [1] * 256, dtype=np.int32)

  def encode(self, text: str) -> np.ndarray:
    data = np.frombuffer(text.encode('utf-8'), dtype=np.uint8)
    return data.astype(np.int32) + _NUM_SPECIAL

  def decode(self, ids) -> str:
    ids = _checked_ids(ids, self.vocab_size)
    data = (ids[ids >= _NUM_SPECIAL] - _NUM_SPECIAL).astype(np.uint8)
    # A sampled sequence may cut a multi-byte character; show it, don't fail.
    return data.tobytes().decode('utf-8', errors='replace')

  def to_dict(self) -> dict:
    return {'kind': 'byte'}

  def save(self, directory: str) -> None:
    _save_json(directory, self.to_dict())


_SPACE_SYMBOL = '\u2581'
NUM_SENTINELS = 100  # as T5: <extra_id_0> .. <extra_id_99>.
_SPM_MODEL_TYPES = ('unigram', 'bpe')
# pad, eos, unk and the 256 byte pieces; the vocabulary needs more than these.
_SPM_MIN_PIECES = 3 + 256
# Training reads a random sample of this many lines: the whole Shakespeare
# train split has 126k non-blank lines, and EM time grows with the sample.
_SPM_TRAINING_LINES = 100_000
# SentencePiece skips training sentences over 4192 bytes; 1024 characters are
# at most 4096 bytes, so a corpus without newlines still trains.
_SPM_MAX_LINE_CHARS = 1024
_SPM_SEED = 0


def normalise(text: str) -> str:
  """What SentencePiece's `decode(encode(text))` returns for `text`.

  The model applies no Unicode normalisation (rule 'identity'), keeps every
  space (no dummy prefix, no whitespace collapsing) and spells characters it
  lacks as UTF-8 byte pieces, so the only change is that U+2581 '▁', which
  SentencePiece uses to spell a space, reads back as a space.

  >>> normalise('a▁b  c')
  'a b  c'
  """
  return text.replace(_SPACE_SYMBOL, ' ')


class SentencePieceTokenizer:
  """A SentencePiece model (ids as in T5) followed by 100 sentinel ids.

  Ids: pad 0, eos 1, unk 2, then the model's pieces (256 byte pieces
  <0x00>..<0xFF> among them), then <extra_id_99> .. <extra_id_0>, so that
  `sentinel_id(0) == vocab_size - 1` as in T5. Any text encodes (byte
  fallback) and `decode(encode(text)) == normalise(text)`.

  `token_bytes`: a piece counts the UTF-8 bytes of its text with '▁' as one
  space byte, a byte piece counts 1, and pad, eos, unk and sentinels count 0.
  """

  pad_id = PAD_ID
  eos_id = EOS_ID
  unk_id = UNK_ID
  num_sentinels = NUM_SENTINELS

  def __init__(self, model_proto: bytes):
    self.model_proto = model_proto
    self._sp = spm.SentencePieceProcessor(model_proto=model_proto)
    specials = (self._sp.pad_id(), self._sp.eos_id(), self._sp.unk_id())
    if specials != (PAD_ID, EOS_ID, UNK_ID):
      raise errors.InputError(
          f'SentencePiece model has (pad, eos, unk) ids {specials}; this '
          f'codebase needs {(PAD_ID, EOS_ID, UNK_ID)} as T5.')
    trainer_spec = sentencepiece_model_pb2.ModelProto.FromString(
        model_proto).trainer_spec
    self.model_type = sentencepiece_model_pb2.TrainerSpec.ModelType.Name(
        trainer_spec.model_type).lower()
    self.num_pieces = self._sp.get_piece_size()
    self.vocab_size = self.num_pieces + NUM_SENTINELS
    token_bytes = np.zeros(self.vocab_size, dtype=np.int32)  # sentinels: 0.
    for i in range(self.num_pieces):
      if self._sp.is_byte(i):
        token_bytes[i] = 1
      elif not (self._sp.is_control(i) or self._sp.is_unknown(i)):
        piece = self._sp.id_to_piece(i).replace(_SPACE_SYMBOL, ' ')
        token_bytes[i] = len(piece.encode('utf-8'))
    self.token_bytes = token_bytes

  def sentinel_id(self, i: int) -> int:
    if not 0 <= i < NUM_SENTINELS:
      raise errors.InputError(
          f'Sentinel index must lie in [0, {NUM_SENTINELS}); got {i}.')
    return self.vocab_size - 1 - i

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._sp.encode(text), dtype=np.int32)

  def decode(self, ids) -> str:
    ids = _checked_ids(ids, self.vocab_size)
    # SentencePiece drops pad and eos itself; sentinels lie beyond its model,
    # so the runs between them are decoded apart and the sentinels spelled.
    parts = []
    start = 0
    for pos in np.flatnonzero(ids >= self.num_pieces):
      parts.append(self._sp.decode(ids[start:pos].tolist()))
      parts.append(f'<extra_id_{self.vocab_size - 1 - ids[pos]}>')
      start = pos + 1
    parts.append(self._sp.decode(ids[start:].tolist()))
    return ''.join(parts)

  def to_dict(self) -> dict:
    # The digest, not the proto, keys the content; save() writes the proto.
    return {'kind': 'sentencepiece', 'model_type': self.model_type,
            'vocab_size': self.vocab_size, 'num_sentinels': NUM_SENTINELS,
            'model_sha256': hashlib.sha256(self.model_proto).hexdigest()}

  def save(self, directory: str) -> None:
    # The model first: tokenizer.json marks a complete save.
    _write_atomic(os.path.join(directory, _SPM_FILENAME), self.model_proto)
    _save_json(directory, self.to_dict())


def _training_lines(texts: Iterable[str]) -> Iterable[str]:
  """Non-blank lines of `texts`, cut to at most _SPM_MAX_LINE_CHARS.

  SentencePiece learns pieces within a line, so a newline is spelled by its
  byte piece <0x0A>: still one token, but never merged with its neighbours.
  """
  for text in texts:
    for line in text.splitlines():
      if line.strip():
        for start in range(0, len(line), _SPM_MAX_LINE_CHARS):
          yield line[start:start + _SPM_MAX_LINE_CHARS]


def _train_sentencepiece(texts: Iterable[str], *, vocab_size: int | None,
                         model_type: str | None) -> SentencePieceTokenizer:
  model_type = model_type or 'unigram'
  if model_type not in _SPM_MODEL_TYPES:
    raise errors.InputError(f'Unknown SentencePiece model type {model_type!r}; '
                     f'choose one of {list(_SPM_MODEL_TYPES)}.')
  if vocab_size is None or vocab_size <= NUM_SENTINELS + _SPM_MIN_PIECES:
    raise errors.InputError(
        f'SentencePiece vocab_size must exceed {NUM_SENTINELS} sentinels + '
        f'{_SPM_MIN_PIECES} pad/eos/unk/byte pieces = '
        f'{NUM_SENTINELS + _SPM_MIN_PIECES}; got {vocab_size}.')
  options = dict(
      model_type=model_type, vocab_size=vocab_size - NUM_SENTINELS,
      pad_id=PAD_ID, eos_id=EOS_ID, unk_id=UNK_ID, bos_id=-1,
      byte_fallback=True,
      # Exact round trip: see `normalise`.
      normalization_rule_name='identity', add_dummy_prefix=False,
      remove_extra_whitespaces=False,
      # Runs of spaces (verse indentation, code) become single pieces.
      allow_whitespace_only_pieces=True,
      input_sentence_size=_SPM_TRAINING_LINES, shuffle_input_sentence=True,
      num_threads=min(os.cpu_count() or 1, 16), minloglevel=2)
  with tempfile.TemporaryDirectory() as tmp:
    lines, model = os.path.join(tmp, 'lines.txt'), os.path.join(tmp, 'model')
    with open(lines, 'w', encoding='utf-8', newline='\n') as f:
      f.writelines(line + '\n' for line in _training_lines(texts))
    failure = _run_child(_SPM_CHILD, lines, model, json.dumps(options))
    if failure is not None:  # e.g. a vocabulary too large for the corpus.
      raise errors.InputError(
          f'SentencePiece {model_type} training for vocab_size {vocab_size} '
          f'({vocab_size - NUM_SENTINELS} pieces + {NUM_SENTINELS} sentinels) '
          f'failed: {failure}')
    with open(model, 'rb') as f:
      return SentencePieceTokenizer(f.read())


# SentencePiece trains in one blocking C++ call, during which the process can run no signal handler; so it
# trains in a child process, and a SIGTERM or Ctrl-C stops the run (lm/train.py) at once, killing the child.
_SPM_CHILD = '''
import json, sys
import sentencepiece as spm
lines, model, options = sys.argv[1:]
spm.set_random_generator_seed({seed})  # The line sample and EM.
try:
  with open(lines, encoding='utf-8', newline='\\n') as f, open(model, 'wb') as out:
    spm.SentencePieceTrainer.train(sentence_iterator=(line[:-1] for line in f), model_writer=out,
                                   **json.loads(options))
except RuntimeError as e:  # SentencePiece's own errors: the message is the reason.
  print(e, file=sys.stderr)
  sys.exit(3)
'''.format(seed=_SPM_SEED)


def _run_child(code: str, *args: str) -> str | None:
  """Runs `code` in a child Python with `args`; None if it succeeded, else the reason it printed (exit status
  3). Any other failure is a bug and raises. An exception here (a signal's) kills the child first."""
  child = subprocess.Popen([sys.executable, '-c', code, *args], stderr=subprocess.PIPE, text=True)
  try:
    _, stderr = child.communicate()
  finally:
    if child.poll() is None:
      child.kill()
      child.wait()
  if child.returncode == 3:
    return stderr.strip().splitlines()[-1] if stderr.strip() else 'no reason given'
  if child.returncode:
    raise RuntimeError(f'SentencePiece training crashed (exit status {child.returncode}):\n{stderr[-2000:]}')
  return None


def _load_sentencepiece(spec: dict, directory: str) -> SentencePieceTokenizer:
  path = os.path.join(directory, _SPM_FILENAME)
  if not os.path.exists(path):
    raise errors.MissingError(f'No SentencePiece model at {path!r}.')
  with open(path, 'rb') as f:
    proto = f.read()
  # The digest first: a damaged file fails here, named, not deep in protobuf.
  digest = hashlib.sha256(proto).hexdigest()
  if digest != spec.get('model_sha256'):
    raise errors.InputError(
        f'{path!r} does not match {_FILENAME} beside it: its sha256 is '
        f"{digest}, not the recorded {spec.get('model_sha256')!r}; the model "
        'is corrupt or was replaced.')
  try:
    tokenizer = SentencePieceTokenizer(proto)
  except Exception as e:  # protobuf and SentencePiece raise their own types.
    raise errors.InputError(f'{path!r} is not a readable SentencePiece model: '
                     f'{e}') from e
  if tokenizer.to_dict() != spec:
    raise errors.InputError(f'{path!r} does not match {_FILENAME} beside it: '
                     f'{tokenizer.to_dict()} != {spec}.')
  return tokenizer


def _build_char(texts: Iterable[str]) -> CharTokenizer:
  chars = set()
  for text in texts:
    chars.update(text)
  return CharTokenizer(''.join(chars))


_BUILDERS: dict[str, Callable[..., Tokenizer]] = {
    'char': _build_char,
    'byte': lambda texts: ByteTokenizer(),
    'sentencepiece': _train_sentencepiece,
}
_LOADERS: dict[str, Callable[[dict, str], Tokenizer]] = {
    'char': lambda spec, directory: CharTokenizer(spec['chars']),
    'byte': lambda spec, directory: ByteTokenizer(),
    'sentencepiece': _load_sentencepiece,
}


def make_tokenizer(kind: str, texts: Iterable[str], *,
                   vocab_size: int | None = None,
                   model_type: str | None = None) -> Tokenizer:
  """Builds a tokenizer of `kind` whose vocab covers `texts`.

  kind: 'char' | 'byte' | 'sentencepiece'. SentencePiece trains on `texts`
  and needs `vocab_size` (sentinels included); `model_type` is 'unigram'
  (default) or 'bpe'. Char and byte take neither.
  """
  if kind not in _BUILDERS:
    raise errors.InputError(
        f'Unknown tokenizer kind {kind!r}; choose one of {sorted(_BUILDERS)}.')
  if kind == 'sentencepiece':
    return _train_sentencepiece(texts, vocab_size=vocab_size,
                                model_type=model_type)
  if vocab_size is not None or model_type is not None:
    raise errors.InputError(
        f'The {kind!r} tokenizer takes no vocab_size or model_type; got '
        f'vocab_size={vocab_size!r}, model_type={model_type!r}.')
  return _BUILDERS[kind](texts)


def load_tokenizer(directory: str) -> Tokenizer:
  """Loads a tokenizer that `Tokenizer.save(directory)` wrote."""
  path = os.path.join(directory, _FILENAME)
  if not os.path.exists(path):
    raise errors.MissingError(f'No tokenizer at {path!r}.')
  try:
    with open(path, encoding='utf-8') as f:
      spec = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.InputError(f'{path!r} is corrupt (not UTF-8 JSON): {e}') from e
  if not isinstance(spec, dict):
    raise errors.InputError(f'{path!r} is corrupt: it holds a '
                     f'{type(spec).__name__}, not a tokenizer description.')
  kind = spec.get('kind')
  if kind not in _LOADERS:
    raise errors.InputError(
        f'{path!r} holds unknown tokenizer kind {kind!r}; '
        f'known: {sorted(_LOADERS)}.')
  return _LOADERS[kind](spec, directory)
