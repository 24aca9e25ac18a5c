"""Tokenizers: one interface (`Tokenizer`) over char, byte, SentencePiece and imported Hugging Face ones.

The tokenizers built here reserve id 0 for padding and id 1 for end-of-sequence; an imported one keeps its model's
ids (GPT-2's eos is 50256), so code reads `pad_id` and `eos_id` rather than assuming them.
`token_bytes[i]` is how many UTF-8 bytes token i stands for; summing it over
the targets gives the exact byte count that bits-per-byte divides by.

Each kind is registered in `_BUILDERS` (built from texts) and `_LOADERS` (read
from a saved directory); 'huggingface' has no builder: `import_hf_tokenizer` reads it from a Hugging Face model
directory. Only SentencePiece has sentinel ids for T5 span corruption; the others have `num_sentinels = 0`.

Why ~1,000 lines in one module: the imported kinds (`HfT5Tokenizer`, `HuggingFaceTokenizer`, about half of it) must
be built by `_LOADERS` when a run directory is read, and `HfT5Tokenizer` extends `SentencePieceTokenizer`; in a
module of their own they would import this one and be imported by it. `HfT5Tokenizer` follows its base class;
the rest of the imported half (`HuggingFaceTokenizer`, `import_hf_tokenizer`, `export_hf_tokenizer`) follows the
SentencePiece loader.
"""

import base64
import hashlib
import json
import math
import os
import re
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
_HF_FILENAME = 'hf_tokenizer.json'  # An imported `tokenizers` pipeline; _FILENAME is our spec beside it.


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


def document_start(tokenizer: Tokenizer) -> list[int]:
  """The ids every document and prompt starts with: [bos] for an imported tokenizer whose model expects it
  (HuggingFaceTokenizer.starts_with_bos), else none."""
  return [tokenizer.bos_id] if getattr(tokenizer, 'starts_with_bos', False) else []


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
# Unicode's White_Space characters, where Rust's char::is_whitespace (so tokenizers' WhitespaceSplit) splits;
# Python's str.split also splits at U+001C..U+001F.
_WHITE_SPACE = re.compile('[\t-\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+')
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


class HfT5Tokenizer(SentencePieceTokenizer):
  """A T5 SentencePiece model as transformers' T5Tokenizer runs it (`import_hf_tokenizer`); ids as
  SentencePieceTokenizer's, kind 'sentencepiece'.

  transformers matches '<pad>', '</s>', '<unk>' and '<extra_id_N>' in the raw text first, then rebuilds the rest
  of SentencePiece's pipeline in its own way (`_hf_encode`); its decode (skip_special_tokens=True) drops unk and
  the sentinels too, and where the directory asks applies clean_up_tokenization_spaces (`clean_up_spaces`).
  """

  def __init__(self, model_proto: bytes, *, clean_up_spaces: bool = False):
    super().__init__(model_proto)
    self.clean_up_spaces = clean_up_spaces
    self._special_ids = {self._sp.id_to_piece(i): i for i in (PAD_ID, EOS_ID, UNK_ID)}
    self._special_ids.update({f'<extra_id_{i}>': self.sentinel_id(i) for i in range(NUM_SENTINELS)})
    # No special token is a prefix of another, so the alternation's order does not matter.
    self._special_re = re.compile('|'.join(map(re.escape, self._special_ids)))
    # The model's normalisation (its precompiled_charsmap) alone, and the model as transformers' Unigram scores a
    # chunk: _hf_encode does the rest.
    self._normaliser = spm.SentencePieceNormalizer(
        model_proto=model_proto, add_dummy_prefix=False, escape_whitespaces=False, remove_extra_whitespaces=False)
    self._chunk_sp = spm.SentencePieceProcessor(model_proto=_as_unigram_scores_chunks(model_proto))
    self._unk_piece = self._sp.id_to_piece(UNK_ID)
    self._unk_re = re.compile(f'({re.escape(self._unk_piece)})')

  def encode(self, text: str) -> np.ndarray:
    ids, start = [], 0
    for match in self._special_re.finditer(text):
      ids += self._hf_encode(text[start:match.start()])
      ids.append(self._special_ids[match.group()])
      start = match.end()
    return np.asarray(ids + self._hf_encode(text[start:]), dtype=np.int32)

  def _hf_encode(self, text: str) -> list[int]:
    """Ids of text that holds no special token, as transformers' pipeline makes them: the model's normalisation;
    a split at Unicode whitespace (SentencePiece's own encode keeps what the normalisation keeps, U+0085 say);
    Metaspace's '▁' before each word and split before every '▁'; each chunk scored on its own by the Unigram
    model, in which '<unk>' is a piece (a normalised '＜unk＞' is unk) as are pad, eos and the sentinels, and
    which fuses a run of unknowns in a chunk into one unk."""
    chunks = [chunk for word in _WHITE_SPACE.split(self._normaliser.normalize(text)) if word
              for chunk in re.split(f'(?={_SPACE_SYMBOL})', word if word[0] == _SPACE_SYMBOL else _SPACE_SYMBOL + word)
              if chunk]
    parts = [(k, part) for k, chunk in enumerate(chunks) for part in self._unk_re.split(chunk) if part]
    ids, chunk_of_last = [], None
    for (k, part), part_ids in zip(parts, self._chunk_sp.encode([part for _, part in parts])):
      for i in part_ids if part != self._unk_piece else [UNK_ID]:
        if not (i == UNK_ID and ids and ids[-1] == UNK_ID and chunk_of_last == k):
          ids.append(i)
        chunk_of_last = k
    return ids

  def decode(self, ids) -> str:
    ids = _checked_ids(ids, self.vocab_size)
    # As transformers' Metaspace decoder: the first piece loses every '▁', the others spell it as a space.
    # (SentencePiece's own decode drops the space of every leading '▁' piece: pieces '▁', '▁a' read 'a' there.)
    kept = ids[(ids < self.num_pieces) & ~np.isin(ids, (PAD_ID, EOS_ID, UNK_ID))].tolist()
    text = ''.join(piece.replace(_SPACE_SYMBOL, ' ' if k else '') for k, piece in enumerate(self._sp.id_to_piece(kept)))
    return _clean_up_spaces(text) if self.clean_up_spaces else text

  def to_dict(self) -> dict:
    return {**super().to_dict(), 'hf_t5': True, 'clean_up_spaces': self.clean_up_spaces}


def _as_unigram_scores_chunks(model_proto: bytes) -> bytes:
  """The model as the Unigram model transformers' T5Tokenizer builds from it scores one chunk of normalised
  text: nothing normalised, prefixed or collapsed, and every piece but unk an ordinary one with its score
  (pad and eos too), followed by the 100 sentinels at score 0 (ids as SentencePieceTokenizer's)."""
  model = sentencepiece_model_pb2.ModelProto.FromString(model_proto)
  normalizer = model.normalizer_spec
  normalizer.name, normalizer.precompiled_charsmap = 'identity', b''
  normalizer.add_dummy_prefix = normalizer.remove_extra_whitespaces = False
  model.trainer_spec.treat_whitespace_as_suffix = False
  types = sentencepiece_model_pb2.ModelProto.SentencePiece
  for piece in model.pieces:
    if piece.type != types.UNKNOWN:
      piece.type = types.NORMAL
  for i in reversed(range(NUM_SENTINELS)):
    model.pieces.add(piece=f'<extra_id_{i}>', score=0.0, type=types.NORMAL)
  return model.SerializeToString()


def training_lines(texts: Iterable[str]) -> Iterable[str]:
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
      f.writelines(line + '\n' for line in training_lines(texts))
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


def _read_recorded(path: str, sha256: str | None, what: str) -> bytes:
  """The bytes of a saved tokenizer's file, whose digest must be the one its spec recorded: a damaged or replaced
  file fails here, named, not deep inside protobuf or tokenizers."""
  if not os.path.exists(path):
    raise errors.MissingError(f'No {what} at {path!r}.')
  with open(path, 'rb') as f:
    data = f.read()
  digest = hashlib.sha256(data).hexdigest()
  if digest != sha256:
    raise errors.InputError(f'{path!r} does not match {_FILENAME} beside it: its sha256 is {digest}, not the '
                            f'recorded {sha256!r}; the file is corrupt or was replaced.')
  return data


def _load_sentencepiece(spec: dict, directory: str) -> SentencePieceTokenizer:
  path = os.path.join(directory, _SPM_FILENAME)
  proto = _read_recorded(path, spec.get('model_sha256'), 'SentencePiece model')
  try:
    tokenizer = (HfT5Tokenizer(proto, clean_up_spaces=spec.get('clean_up_spaces', False)) if spec.get('hf_t5')
                 else SentencePieceTokenizer(proto))
  except Exception as e:  # protobuf and SentencePiece raise their own types.
    raise errors.InputError(f'{path!r} is not a readable SentencePiece model: '
                     f'{e}') from e
  if tokenizer.to_dict() != spec:
    raise errors.InputError(f'{path!r} does not match {_FILENAME} beside it: '
                     f'{tokenizer.to_dict()} != {spec}.')
  return tokenizer


def _clean_up_spaces(text: str) -> str:
  """transformers' `clean_up_tokenization` (decode with clean_up_tokenization_spaces=True), replacement for
  replacement."""
  for old, new in ((' .', '.'), (' ?', '?'), (' !', '!'), (' ,', ','), (" ' ", "'"), (" n't", "n't"),
                   (" 'm", "'m"), (" 's", "'s"), (" 've", "'ve"), (" 're", "'re")):
    text = text.replace(old, new)
  return text


def _hf_tokenizers():
  """The `tokenizers` package, imported on first use: only the 'huggingface' kind needs it (the hf extra)."""
  try:
    import tokenizers  # The top-level package: this module is lm.tokenizers.
  except ImportError as e:
    raise errors.MissingError(
        "A 'huggingface' tokenizer needs the `tokenizers` package, which is not installed: install the hf "
        'extra (./run.sh import does).') from e
  return tokenizers


def _component_types(component) -> set[str]:
  """The `type` of a tokenizer.json component (normalizer, pre_tokenizer, decoder) and of those it nests."""
  if isinstance(component, list):
    return set().union(*map(_component_types, component))
  if not isinstance(component, dict):
    return set()
  nested = [v for k, v in component.items() if k in ('normalizers', 'pretokenizers', 'decoders')]
  return {component.get('type')} | _component_types(nested)


_BYTE_PIECE = re.compile(r'<0x[0-9A-F]{2}>')


def _hf_token_bytes(tokenizer, spec: dict, vocab_size: int) -> np.ndarray:
  """UTF-8 bytes each id stands for. Byte-level BPE spells each byte as one character of a 256-character alphabet;
  elsewhere '▁' (metaspace) is one space byte and a byte-fallback piece <0xNN> one byte. Special added tokens, the
  model's unknown token and ids the vocabulary skips count 0."""
  byte_level = 'ByteLevel' in _component_types([spec.get('pre_tokenizer'), spec.get('decoder')])
  model = spec['model']
  byte_fallback = model.get('byte_fallback', False)
  unknown_id = model.get('unk_id') if model.get('type') == 'Unigram' else tokenizer.token_to_id(
      model.get('unk_token') or '')
  added = tokenizer.get_added_tokens_decoder()
  counts = np.zeros(vocab_size, dtype=np.int32)
  for token, i in tokenizer.get_vocab(with_added_tokens=True).items():
    if i in added:
      counts[i] = 0 if added[i].special else len(added[i].content.encode('utf-8'))
    elif i == unknown_id:
      counts[i] = 0
    elif byte_level:
      counts[i] = len(token)
    elif byte_fallback and _BYTE_PIECE.fullmatch(token):
      counts[i] = 1
    else:
      counts[i] = len(token.replace(_SPACE_SYMBOL, ' ').encode('utf-8'))
  return counts


class HuggingFaceTokenizer:
  """A Hugging Face `tokenizers` pipeline that `import_hf_tokenizer` read, ids as transformers gives them.

  encode adds no special tokens (the data pipeline appends eos itself); decode skips the special ones, as
  transformers' `decode(ids, skip_special_tokens=True)`, then applies clean_up_tokenization_spaces where the
  directory asked for it (`clean_up_spaces`). The special ids are the model's: GPT-2's eos is 50256 and, as it has
  no pad token, pad = eos (what its users set). `bos_id` is None where the model has none; `unk_id` exists only
  where it has one.
  """

  num_sentinels = 0
  sentinel_id = _no_sentinels

  def __init__(self, json_text: str, *, eos_id: int, pad_id: int, bos_id: int | None = None,
               unk_id: int | None = None, clean_up_spaces: bool = False):
    try:
      self._tokenizer = _hf_tokenizers().Tokenizer.from_str(json_text)
    except Exception as e:  # tokenizers raises a bare Exception.
      raise errors.InputError(f'Not a Hugging Face tokenizers pipeline: {e}') from e
    self.json_text = json_text
    self.vocab_size = max(self._tokenizer.get_vocab(with_added_tokens=True).values()) + 1
    for name, i in (('eos_id', eos_id), ('pad_id', pad_id), ('bos_id', bos_id), ('unk_id', unk_id)):
      if i is not None and not 0 <= i < self.vocab_size:
        raise errors.InputError(f'{name}={i} lies outside the vocabulary [0, {self.vocab_size}).')
    self.eos_id, self.pad_id, self.bos_id = eos_id, pad_id, bos_id
    if unk_id is not None:  # generate.text drops unk ids where a tokenizer has them.
      self.unk_id = unk_id
    self.clean_up_spaces = clean_up_spaces
    self.token_bytes = _hf_token_bytes(self._tokenizer, json.loads(json_text), self.vocab_size)
    # Where the pipeline's post-processor puts bos first (Llama's does), transformers' tokenizer(text) starts every
    # text with it: so do this codebase's documents and prompts (`document_start`).
    with_specials = self._tokenizer.encode('a', add_special_tokens=True).ids
    self.starts_with_bos = (bos_id is not None and with_specials[:1] == [bos_id]
                            and self._tokenizer.encode('a', add_special_tokens=False).ids[:1] != [bos_id])

  def encode(self, text: str) -> np.ndarray:
    return np.asarray(self._tokenizer.encode(text, add_special_tokens=False).ids, dtype=np.int32)

  def decode(self, ids) -> str:
    ids = _checked_ids(ids, self.vocab_size)
    text = self._tokenizer.decode(ids.tolist(), skip_special_tokens=True)
    return _clean_up_spaces(text) if self.clean_up_spaces else text

  def to_dict(self) -> dict:
    # The digest, not the pipeline, keys the content; save() writes the pipeline.
    return {'kind': 'huggingface', 'vocab_size': self.vocab_size, 'eos_id': self.eos_id, 'pad_id': self.pad_id,
            'bos_id': self.bos_id, 'unk_id': getattr(self, 'unk_id', None), 'clean_up_spaces': self.clean_up_spaces,
            'json_sha256': hashlib.sha256(self.json_text.encode('utf-8')).hexdigest()}

  def save(self, directory: str) -> None:
    # The pipeline first: tokenizer.json marks a complete save.
    _write_atomic(os.path.join(directory, _HF_FILENAME), self.json_text.encode('utf-8'))
    _save_json(directory, self.to_dict())


def _load_huggingface(spec: dict, directory: str) -> HuggingFaceTokenizer:
  path = os.path.join(directory, _HF_FILENAME)
  data = _read_recorded(path, spec.get('json_sha256'), 'Hugging Face tokenizer')
  try:
    tokenizer = HuggingFaceTokenizer(data.decode('utf-8'), **{
        key: spec.get(key) for key in ('eos_id', 'pad_id', 'bos_id', 'unk_id')}, clean_up_spaces=bool(
            spec.get('clean_up_spaces')))
  except (UnicodeDecodeError, errors.InputError) as e:
    raise errors.InputError(f'{path!r} is not a readable Hugging Face tokenizer: {e}') from e
  if tokenizer.to_dict() != spec:
    raise errors.InputError(f'{path!r} does not match {_FILENAME} beside it: {tokenizer.to_dict()} != {spec}.')
  return tokenizer


# Importing a Hugging Face model directory's tokenizer. transformers 5 picks a tokenizer class for the directory
# (tokenizer_config.json's tokenizer_class, else config.json's model_type) and some classes rebuild the pipeline
# from tokenizer.json's vocabulary in their own way rather than running the file as it is; the import reproduces
# what the class builds and saves that pipeline, so a run needs neither transformers nor the class.
_HF_SPIECE = 'spiece.model'
_HF_JSON = 'tokenizer.json'
_HF_CONFIG = 'tokenizer_config.json'
# Classes (without 'Fast', as transformers reads them) that run tokenizer.json as it is.
_HF_AS_IS = ('TokenizersBackend', 'PreTrainedTokenizer')
_HF_MODEL_TYPES = {'gpt2': 'GPT2Tokenizer', 't5': 'T5Tokenizer', 'mt5': 'T5Tokenizer',
                   'llama': 'TokenizersBackend'}  # transformers 5 maps no class to 'llama'.
# The special tokens a class names where the directory does not.
_HF_CLASS_SPECIALS = {
    'GPT2Tokenizer': {'unk_token': '<|endoftext|>', 'bos_token': '<|endoftext|>', 'eos_token': '<|endoftext|>'},
    'LlamaTokenizer': {'unk_token': '<unk>', 'bos_token': '<s>', 'eos_token': '</s>'},
    'T5Tokenizer': {'pad_token': '<pad>', 'eos_token': '</s>', 'unk_token': '<unk>'},
}
_HF_SPECIAL_KEYS = ('bos_token', 'eos_token', 'unk_token', 'sep_token', 'pad_token', 'cls_token', 'mask_token')


def read_json_object(path: str, default=None):
  """The JSON object in `path` (a tokenizer's spec, an HF directory's config files), or `default` if there is no
  such file; a file that is not one is refused, named."""
  if not os.path.exists(path):
    return default
  try:
    with open(path, encoding='utf-8') as f:
      value = json.load(f)
  except (json.JSONDecodeError, UnicodeDecodeError) as e:
    raise errors.InputError(f'{path!r} is corrupt: not UTF-8 JSON ({e})') from None
  if not isinstance(value, dict):
    raise errors.InputError(f'{path!r} is corrupt: it holds a {type(value).__name__}, not a JSON object')
  return value


def _content(token) -> str | None:
  """A special token's text: tokenizer_config.json writes it as a string or as an AddedToken's fields."""
  return token.get('content') if isinstance(token, dict) else token


def _extra_specials(config: dict) -> list:
  """additional_special_tokens (transformers 4) and extra_special_tokens (5: a list, or names -> tokens)."""
  extras = []
  for key in ('additional_special_tokens', 'extra_special_tokens'):
    value = config.get(key) or []
    extras += list(value.values()) if isinstance(value, dict) else list(value)
  return extras


def _hf_tokenizer_config(hf_dir: str) -> dict:
  """tokenizer_config.json, with special_tokens_map.json over it where transformers reads that file too (when
  the config lists no added_tokens_decoder)."""
  config = read_json_object(os.path.join(hf_dir, _HF_CONFIG), {})
  if 'added_tokens_decoder' not in config:
    config.update(read_json_object(os.path.join(hf_dir, 'special_tokens_map.json'), {}))
  return config


def _hf_class(hf_dir: str, config: dict, model_config: dict, json_text: str | None) -> str | None:
  """The class transformers 5's AutoTokenizer builds, without 'Fast'; None where nothing names one."""
  name = config.get('tokenizer_class') or model_config.get('tokenizer_class')
  if not name and 'model_type' in model_config:
    name = _HF_MODEL_TYPES.get(model_config['model_type'])
    if name is None:
      raise errors.InputError(
          f"{hf_dir!r} names no tokenizer_class and its config.json's model_type "
          f"{model_config['model_type']!r} is not one whose tokenizer class this import knows "
          f'({sorted(_HF_MODEL_TYPES)}); set tokenizer_class in {_HF_CONFIG}.')
  if not name:
    return None
  name = name.removesuffix('Fast')
  # As transformers does: a byte-level tokenizer.json runs as it is, whatever metaspace LlamaTokenizer would build.
  if name == 'LlamaTokenizer' and json_text is not None and '"ByteLevel"' in json_text:
    return 'TokenizersBackend'
  return name


def import_hf_tokenizer(hf_dir: str) -> Tokenizer:
  """The tokenizer of the Hugging Face model directory `hf_dir`: ids and decoded text as
  `transformers.AutoTokenizer.from_pretrained(hf_dir)` gives them (encode with add_special_tokens=False, decode
  with skip_special_tokens=True), without transformers.

  spiece.model (T5): an `HfT5Tokenizer` (a SentencePieceTokenizer), whose 100 sentinels are T5's extra ids. Else
  tokenizer.json: a `HuggingFaceTokenizer`. What this import cannot reproduce exactly it refuses, naming why.
  """
  spiece, json_path = os.path.join(hf_dir, _HF_SPIECE), os.path.join(hf_dir, _HF_JSON)
  if not (os.path.exists(spiece) or os.path.exists(json_path)):
    raise errors.MissingError(f'{hf_dir!r} holds no tokenizer this import reads: it looked for {_HF_SPIECE} (T5) '
                              f'and {_HF_JSON} (a tokenizers pipeline).')
  config = _hf_tokenizer_config(hf_dir)
  model_config = read_json_object(os.path.join(hf_dir, 'config.json'), {})
  json_text = None
  if os.path.exists(json_path):
    with open(json_path, 'rb') as f:
      try:
        json_text = f.read().decode('utf-8')
      except UnicodeDecodeError as e:
        raise errors.InputError(f'{json_path!r} is not UTF-8: {e}') from e
  name = _hf_class(hf_dir, config, model_config, json_text)
  if os.path.exists(spiece):
    return _import_t5(spiece, name, config, json_path, json_text)
  return _import_tokenizer_json(json_path, json_text, name, config, model_config)


def _import_t5(path: str, name: str | None, config: dict, json_path: str, json_text: str | None
               ) -> HfT5Tokenizer:
  if name not in (None, 'T5Tokenizer'):
    raise errors.InputError(f'{path!r}: tokenizer_class {name!r}; only T5Tokenizer directories are read from '
                            f'{_HF_SPIECE} (other classes build other pipelines from it).')
  with open(path, 'rb') as f:
    proto = f.read()
  try:
    model = sentencepiece_model_pb2.ModelProto.FromString(proto)
  except Exception as e:  # protobuf's DecodeError.
    raise errors.InputError(f'{path!r} is not a SentencePiece model: {e}') from e
  _check_t5_model(model, path)
  _check_t5_tokens(model, config, path)
  if json_text is not None:
    _check_t5_json(model, json_path, json_text)
  return HfT5Tokenizer(proto, clean_up_spaces=bool(config.get('clean_up_tokenization_spaces', False)))


def _check_t5_model(model, path: str) -> None:
  """transformers' T5Tokenizer scores the model's pieces as a Unigram model without byte fallback, so a
  SentencePiece BPE model or one with byte fallback would not see the ids it was trained with (HfT5Tokenizer
  mirrors the rest of that pipeline, the whitespace split and a '▁' before every word, whatever the model's own
  normaliser settings)."""
  trainer = model.trainer_spec
  problems = [text for bad, text in (
      (trainer.model_type != sentencepiece_model_pb2.TrainerSpec.UNIGRAM,
       f'model_type {sentencepiece_model_pb2.TrainerSpec.ModelType.Name(trainer.model_type).lower()}'),
      (trainer.byte_fallback, 'byte_fallback')) if bad]
  if problems:
    raise errors.InputError(f"{path!r} has {' and '.join(problems)}, which transformers' T5Tokenizer ignores (it "
                            'builds a Unigram model without byte fallback): its ids would not be the model\'s.')


def _check_t5_tokens(model, config: dict, path: str) -> None:
  """The directory's special tokens are T5's, which SentencePieceTokenizer numbers: pad, eos, unk as the model's
  first three pieces and 100 sentinels after them; any other would be an added token it lacks."""
  pieces = {key: model.pieces[i].piece for key, i in (('pad_token', PAD_ID), ('eos_token', EOS_ID),
                                                        ('unk_token', UNK_ID))}
  named = {key: _content(config.get(key, _HF_CLASS_SPECIALS['T5Tokenizer'].get(key))) for key in _HF_SPECIAL_KEYS}
  wrong = {key: token for key, token in named.items() if token is not None and token != pieces.get(key)}
  sentinels = {f'<extra_id_{i}>' for i in range(NUM_SENTINELS)}
  extras = {_content(token) for token in _extra_specials(config)}
  listed = {token for token in extras if token.startswith('<extra_id_')}
  others = extras - sentinels - set(pieces.values())
  extra_ids = config.get('extra_ids', NUM_SENTINELS)
  if wrong or others or extra_ids != NUM_SENTINELS or (listed and listed != sentinels):
    raise errors.InputError(
        f'The special tokens beside {path!r} are not T5\'s: extra_ids {extra_ids!r}, {len(listed)} of the '
        f'{NUM_SENTINELS} <extra_id_N> listed, named {wrong or "as T5"} (the model has {pieces}), others '
        f'{sorted(others)}; this import reproduces only pad, eos, unk and {NUM_SENTINELS} sentinels.')
  decoder = config.get('added_tokens_decoder') or {}
  _check_t5_added(model, [dict(token, id=int(i)) for i, token in decoder.items()],
                  repr(os.path.join(os.path.dirname(path), _HF_CONFIG)))


def _check_t5_added(model, added: list[dict], source: str) -> None:
  """Each added token (content, id, special) is one of T5's, at the id HfT5Tokenizer gives it."""
  ids = {model.pieces[i].piece: i for i in (PAD_ID, EOS_ID, UNK_ID)}
  ids.update({f'<extra_id_{i}>': len(model.pieces) + NUM_SENTINELS - 1 - i for i in range(NUM_SENTINELS)})
  for token in added:
    if ids.get(token.get('content')) != token.get('id') or not token.get('special'):
      raise errors.InputError(f'{source} adds token {token.get("content")!r} as id {token.get("id")}; this import '
                              'reproduces only T5\'s special tokens, at their ids.')


def _check_t5_json(model, path: str, text: str) -> None:
  """transformers reads a T5 directory's vocabulary, scores and normalisation from tokenizer.json where there is
  one: it must be the model's."""
  spec = _hf_json_spec(path, text)
  vocab = spec['model'].get('vocab') or []
  want = [(p.piece, p.score) for p in model.pieces]
  want += [(f'<extra_id_{i}>', 0.0) for i in reversed(range(NUM_SENTINELS))]
  if spec['model'].get('type') != 'Unigram' or len(vocab) not in (len(model.pieces), len(want)):
    raise errors.InputError(f'{path!r} is not the Unigram model of {_HF_SPIECE} beside it: a '
                            f"{spec['model'].get('type')!r} model of {len(vocab)} pieces.")
  for i, ((piece, score), (want_piece, want_score)) in enumerate(zip(vocab, want)):
    if piece != want_piece or not math.isclose(score, want_score, rel_tol=1e-6, abs_tol=1e-6):
      raise errors.InputError(f'{path!r} differs from {_HF_SPIECE} beside it at id {i}: {(piece, score)} != '
                              f'{(want_piece, want_score)}.')
  normalizers = spec.get('normalizer') or {}
  normalizers = normalizers.get('normalizers', [normalizers]) if isinstance(normalizers, dict) else normalizers
  charsmaps = [base64.b64decode(n['precompiled_charsmap']) for n in normalizers if n.get('type') == 'Precompiled']
  if (charsmaps[0] if charsmaps else b'') != model.normalizer_spec.precompiled_charsmap:
    raise errors.InputError(f'{path!r} normalises text differently from {_HF_SPIECE} beside it (its '
                            'precompiled_charsmap).')
  _check_t5_added(model, spec.get('added_tokens') or [], repr(path))


def _hf_json_spec(path: str, text: str) -> dict:
  try:
    spec = json.loads(text)
  except json.JSONDecodeError as e:
    raise errors.InputError(f'{path!r} is not JSON: {e}') from e
  if not isinstance(spec, dict) or not isinstance(spec.get('model'), dict):
    raise errors.InputError(f'{path!r} is not a tokenizers pipeline: it has no "model" object.')
  return spec


def _import_tokenizer_json(path: str, text: str, name: str | None, config: dict,
                           model_config: dict) -> HuggingFaceTokenizer:
  spec = _hf_json_spec(path, text)
  hf = _hf_tokenizers()
  try:
    tokenizer = hf.Tokenizer.from_str(text)
    if name not in (None, *_HF_AS_IS):
      tokenizer = _as_class_builds(hf, tokenizer, spec, name, config, path)
  except errors.InputError:
    raise
  except Exception as e:  # tokenizers raises a bare Exception.
    raise errors.InputError(f'{path!r} is not a tokenizers pipeline this tokenizers version reads: {e}') from e
  # transformers encodes without the truncation and padding a file may carry.
  tokenizer.no_truncation()
  tokenizer.no_padding()
  named = _add_transformers_tokens(hf, tokenizer, config, name, spec)
  ids = {key: tokenizer.token_to_id(token) for key, token in named.items()}
  eos_id = ids.get('eos_token', _model_token_id(model_config, 'eos'))
  if not isinstance(eos_id, int):
    raise errors.InputError(f'{path!r}: the directory names no eos token ({_HF_CONFIG} eos_token, '
                            'special_tokens_map.json, config.json eos_token_id); the data pipeline ends every '
                            'document with one.')
  pad_id = ids.get('pad_token', _model_token_id(model_config, 'pad'))
  clean_up = config.get('clean_up_tokenization_spaces', False) and (
      spec['model'].get('type') != 'BPE'  # transformers skips it for BPE, unless told to do it anyway.
      or config.get('clean_up_tokenization_spaces_for_bpe_even_though_it_will_corrupt_output', False))
  return HuggingFaceTokenizer(tokenizer.to_str(), eos_id=eos_id, pad_id=eos_id if pad_id is None else pad_id,
                              bos_id=ids.get('bos_token', _model_token_id(model_config, 'bos')),
                              unk_id=ids.get('unk_token'),
                              clean_up_spaces=bool(clean_up))


def _model_token_id(model_config: dict, name: str) -> int | None:
  """config.json's `{name}_token_id` (the model's, where the tokenizer files name none); of a list, the first."""
  value = model_config.get(f'{name}_token_id')
  return value[0] if isinstance(value, list) and value else value if isinstance(value, int) else None


def _as_class_builds(hf, tokenizer, spec: dict, name: str, config: dict, path: str):
  """The pipeline transformers 5's class `name` builds from tokenizer.json's vocabulary and merges (its
  __init__), in place of the file's own normaliser, pre-tokenizer, decoder and model options."""
  model = spec['model']
  if name not in ('GPT2Tokenizer', 'LlamaTokenizer'):
    raise errors.InputError(
        f"{path!r}: tokenizer_class {name!r}, which transformers 5 may build differently from the file; this "
        f'import reproduces {sorted(_HF_AS_IS)} (the file as it is), GPT2Tokenizer, LlamaTokenizer, and '
        f'T5Tokenizer from {_HF_SPIECE}.')
  if model.get('type') != 'BPE':
    raise errors.InputError(f"{path!r}: {name} builds a BPE model, but the file's is {model.get('type')!r}.")
  merges = [tuple(m.split(' ')) if isinstance(m, str) else tuple(m) for m in model.get('merges', [])]
  built = hf.Tokenizer(hf.models.BPE(vocab=model['vocab'], merges=merges, dropout=None, **(
      dict(continuing_subword_prefix='', end_of_word_suffix='', fuse_unk=False) if name == 'GPT2Tokenizer' else
      dict(fuse_unk=True, byte_fallback=True))))
  if name == 'GPT2Tokenizer':
    built.pre_tokenizer = hf.pre_tokenizers.ByteLevel(add_prefix_space=bool(config.get('add_prefix_space', False)))
    built.decoder = hf.decoders.ByteLevel()
  else:
    prefix = config.get('add_prefix_space')
    prefix = True if prefix is None else prefix
    scheme = ('always' if config.get('legacy', False) else 'first') if prefix else 'never'
    built.pre_tokenizer = hf.pre_tokenizers.Metaspace(replacement=_SPACE_SYMBOL, prepend_scheme=scheme, split=False)
    built.decoder = hf.decoders.Sequence(
        [hf.decoders.Replace(_SPACE_SYMBOL, ' '), hf.decoders.ByteFallback(), hf.decoders.Fuse()]
        + ([hf.decoders.Strip(content=' ', left=1)] if prefix else []))
  # The class starts with no added tokens: _add_transformers_tokens adds the file's, as transformers does.
  return built


def _added_token(hf, token):
  """An AddedToken from a string (special, as transformers makes named tokens) or from its saved fields."""
  if isinstance(token, dict):
    return hf.AddedToken(**{k: v for k, v in token.items() if k != '__type'})
  return hf.AddedToken(token, special=True)


def _add_transformers_tokens(hf, tokenizer, config: dict, name: str | None, spec: dict) -> dict[str, str]:
  """Adds the added and special tokens transformers 5 adds on loading, in its order; returns the named special
  tokens (eos_token, ...) by key.

  Its added tokens are tokenizer_config.json's added_tokens_decoder, else tokenizer.json's; each is added unless
  the pipeline has it already. Then the named special tokens (the class's where the directory names none) and the
  extra ones are added if missing, and finally added again as special.
  """
  decoder = config.get('added_tokens_decoder')
  decoder = sorted((int(i), t) for i, t in decoder.items()) if decoder else [
      (t['id'], {k: v for k, v in t.items() if k != 'id'}) for t in spec.get('added_tokens') or []]
  decoder = [(i, _added_token(hf, t)) for i, t in decoder]
  fields = lambda t: (t.content, t.single_word, t.lstrip, t.rstrip, t.normalized, t.special)
  present = {fields(t) for t in tokenizer.get_added_tokens_decoder().values()}
  new = [t for _, t in decoder if fields(t) not in present]
  by_content = {t.content: t for _, t in decoder}
  named = {key: config.get(key, _HF_CLASS_SPECIALS.get(name, {}).get(key)) for key in _HF_SPECIAL_KEYS}
  named = {key: token for key, token in named.items() if _content(token)}
  specials = [by_content.get(_content(t)) or _added_token(hf, t) for t in [*named.values(), *_extra_specials(config)]]
  known = {t.content for t in tokenizer.get_added_tokens_decoder().values()} | {t.content for t in new}
  new += [t for t in specials if t.content not in known]
  tokenizer.add_tokens(new)
  tokenizer.add_special_tokens(specials)
  for i, token in decoder:
    if tokenizer.token_to_id(token.content) != i:
      raise errors.InputError(f'Added token {token.content!r} is id {i} in the directory but '
                              f'{tokenizer.token_to_id(token.content)} once added: its ids have gaps or repeats.')
  return {key: _content(token) for key, token in named.items()}


def export_hf_tokenizer(tokenizer: Tokenizer, hf_dir: str) -> str:
  """Writes `tokenizer` into HF model directory `hf_dir` as files `transformers.AutoTokenizer` reads to the same
  ids, where that exists; returns what it wrote (or why nothing)."""
  def write_config(config: dict) -> None:
    _write_atomic(os.path.join(hf_dir, _HF_CONFIG), json.dumps(config, indent=2).encode('utf-8'))

  if isinstance(tokenizer, HuggingFaceTokenizer):  # The pipeline transformers ran, run as it is.
    _write_atomic(os.path.join(hf_dir, _HF_JSON), tokenizer.json_text.encode('utf-8'))
    names = {key: tokenizer._tokenizer.id_to_token(i) for key, i in (
        ('eos_token', tokenizer.eos_id), ('pad_token', tokenizer.pad_id), ('bos_token', tokenizer.bos_id),
        ('unk_token', getattr(tokenizer, 'unk_id', None))) if i is not None}
    write_config({'tokenizer_class': 'PreTrainedTokenizerFast', 'clean_up_tokenization_spaces':
                  tokenizer.clean_up_spaces, **names})
    return f'tokenizer: {_HF_JSON} ({tokenizer.vocab_size} ids)'
  if isinstance(tokenizer, HfT5Tokenizer):
    _write_atomic(os.path.join(hf_dir, _HF_SPIECE), tokenizer.model_proto)
    write_config({'tokenizer_class': 'T5Tokenizer', 'extra_ids': NUM_SENTINELS, 'eos_token': '</s>',
                  'unk_token': '<unk>', 'pad_token': '<pad>',
                  'clean_up_tokenization_spaces': tokenizer.clean_up_spaces})
    return f'tokenizer: {_HF_SPIECE} with {NUM_SENTINELS} extra ids'
  kind = tokenizer.to_dict()['kind']
  return (f'no tokenizer written: transformers has no tokenizer that gives this {kind!r} tokenizer\'s ids '
          '(only imported ones export)')


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
    'huggingface': _load_huggingface,
}


def make_tokenizer(kind: str, texts: Iterable[str], *,
                   vocab_size: int | None = None,
                   model_type: str | None = None) -> Tokenizer:
  """Builds a tokenizer of `kind` whose vocab covers `texts`.

  kind: 'char' | 'byte' | 'sentencepiece'. SentencePiece trains on `texts`
  and needs `vocab_size` (sentinels included); `model_type` is 'unigram'
  (default) or 'bpe'. Char and byte take neither.
  """
  if kind == 'huggingface':
    raise errors.InputError("A 'huggingface' tokenizer is not built from texts: it is imported with a Hugging Face "
                            'model (./run.sh import, import_hf_tokenizer).')
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
  spec = read_json_object(path)
  kind = spec.get('kind')
  if kind not in _LOADERS:
    raise errors.InputError(
        f'{path!r} holds unknown tokenizer kind {kind!r}; '
        f'known: {sorted(_LOADERS)}.')
  return _LOADERS[kind](spec, directory)
