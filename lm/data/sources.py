"""The user's corpus files as downloaded, read as a stream of records: which files data.path names, what kind
each is, and its records with their 1-based line (or row) numbers and what is malformed about each bad one.

    *.txt, *.txt.gz, *.txt.zst           one document per line; blank lines are no records
    *.jsonl, *.json (+ .gz, .zst)        one JSON object per line, the text in its text_key field (c4's *.json.gz
                                         are JSON lines too)
    *.parquet                            one record per row, the text in column text_key

Reading never loads a whole file: lines one by one (decompressed as a stream), parquet row group by row group.
`read_records(path, key, start)` skips the first `start` lines or rows, so a conversion can continue inside a file.
"""

import glob
import gzip
import io
import json
import os

import pyarrow as pa
import pyarrow.parquet as pq
import zstandard

from lm import errors
from lm.config import check

# File kinds by the suffix before an optional compression suffix. Parquet compresses inside the file.
KINDS = {'.txt': 'text', '.jsonl': 'json', '.json': 'json', '.parquet': 'parquet'}
COMPRESSIONS = ('.gz', '.zst')
_PARQUET_BATCH_ROWS = 8192


def file_kind(path: str) -> tuple[str, str] | None:
  """(kind, compression suffix or '') of a supported file name, else None."""
  name = path.lower()
  compression = next((c for c in COMPRESSIONS if name.endswith(c)), '')
  stem = name[:len(name) - len(compression)]
  kind = next((k for suffix, k in KINDS.items() if stem.endswith(suffix)), None)
  return None if kind is None or (kind == 'parquet' and compression) else (kind, compression)


def _supported() -> str:
  return '*.txt, *.jsonl, *.json (each also .gz or .zst) and *.parquet'


def resolve_files(path: str, exclude: str = '') -> list[str]:
  """data.path (a file, a directory searched recursively, or a glob) -> sorted absolute paths of supported files.

  A directory gives its supported files but hidden ones and plain *.json, which beside a corpus are metadata
  (Hugging Face's dataset_infos.json) more often than JSON lines: name those by a glob or a path. Files under
  `exclude` (the data dir, whose own .json files are no corpus) are left out."""
  check(bool(path), 'data.path', path, "is empty; data.name='local' needs --config.data.path=FILE_DIR_OR_GLOB")
  full = os.path.abspath(os.path.expanduser(path))
  if os.path.isfile(full):
    check(file_kind(full) is not None, 'data.path', path, f'is of no supported kind; local reads {_supported()}')
    return [full]
  if os.path.isdir(full):
    candidates, where = glob.glob(os.path.join(full, '**', '*'), recursive=True), 'directory'  # Hidden left out.
  elif glob.has_magic(full):
    candidates, where = glob.glob(full, recursive=True), 'glob'
  else:
    raise errors.MissingError(f'data.path {path!r} does not exist.')
  skip = os.path.join(os.path.abspath(exclude), '') if exclude else None
  files = sorted(f for f in candidates if os.path.isfile(f) and not (skip and f.startswith(skip)))
  if where == 'glob':
    unknown = [f for f in files if file_kind(f) is None]
    check(not unknown, 'data.path', path, f'matches files of no supported kind ({_supported()}): {unknown[:3]}')
  files = [f for f in files if file_kind(f) is not None and not (where == 'directory' and f.lower().endswith('.json'))]
  if not files:
    raise errors.MissingError(f'data.path {where} {path!r} holds no {_supported()} files.')
  return files


def location(path: str, n: int) -> str:
  """Where record n of `path` is, as messages name it: 'FILE:LINE', or 'FILE row ROW' for parquet."""
  return f'{path} row {n}' if file_kind(path)[0] == 'parquet' else f'{path}:{n}'


_BOM = b'\xef\xbb\xbf'  # UTF-8's byte-order mark.


def _open_lines(path: str, compression: str):
  if compression == '.gz':
    return gzip.open(path, 'rb')
  if compression == '.zst':  # Concatenated frames (pzstd, split-and-cat) are one stream.
    stream = zstandard.ZstdDecompressor().stream_reader(open(path, 'rb'), read_across_frames=True, closefd=True)
    return io.BufferedReader(stream)
  return open(path, 'rb')


def read_records(path: str, text_key: str, start: int = 0):
  """Yields (n, text, problem) for the records of `path` after its first `start` lines (or rows), n 1-based:
  text is the record's text and problem '', or text is None and problem says what is malformed."""
  kind, compression = file_kind(path)
  if kind == 'parquet':
    yield from _parquet_records(path, text_key, start)
    return
  n = 0
  try:
    lines = _open_lines(path, compression)
  except OSError as e:  # Unreadable (permissions, a directory named like a file): named, not a traceback.
    raise errors.InputError(f'{path}: cannot read it ({e})') from None
  with lines:
    try:
      for n, line in enumerate(lines, 1):
        if n == 1 and line.startswith(_BOM):  # Editors on Windows write one; it is no part of the text.
          line = line[len(_BOM):]
        if n <= start or not line.strip():
          continue
        yield (n, *_parse_line(line, kind, text_key))
    except (OSError, EOFError, zstandard.ZstdError) as e:  # A corrupt or truncated stream: nothing more to read.
      raise errors.InputError(f'{path}:{n + 1}: cannot decompress ({e}); the file is corrupt or truncated.') from None


def _parse_line(line: bytes, kind: str, text_key: str) -> tuple[str | None, str]:
  try:
    text = line.decode('utf-8')
  except UnicodeDecodeError as e:
    return None, f'not valid UTF-8 (byte {line[e.start:e.start + 1]!r} at column {e.start + 1})'
  if kind == 'text':
    return text.rstrip('\r\n'), ''
  try:
    record = json.loads(text)
  except ValueError as e:
    return None, f'not valid JSON ({e}); a .json/.jsonl file holds one JSON object per line'
  if not isinstance(record, dict):
    return None, f'a JSON {type(record).__name__}, not an object'
  return _text_of(record.get(text_key, _ABSENT), text_key, list(record))


_ABSENT = object()


def _text_of(value, text_key: str, fields) -> tuple[str | None, str]:
  if value is _ABSENT:
    return None, f'no {text_key!r} field (data.text_key); it has {sorted(fields)[:10]}'
  if isinstance(value, bytes):  # A parquet binary column.
    try:
      return value.decode('utf-8'), ''
    except UnicodeDecodeError as e:
      return None, f'{text_key!r} is not valid UTF-8 (byte {value[e.start:e.start + 1]!r} at offset {e.start})'
  if not isinstance(value, str):
    return None, f'{text_key!r} is {"null" if value is None else "a " + type(value).__name__}, not a string'
  return value, ''


def _parquet_records(path: str, text_key: str, start: int):
  """`read_records` of a parquet file, row group by row group; a damaged file is named."""
  try:
    yield from _parquet_rows(path, text_key, start)
  except (pa.ArrowException, OSError) as e:
    raise errors.InputError(f'{path}: cannot read it as parquet ({e}); the file is corrupt or truncated.') from None


def _parquet_rows(path: str, text_key: str, start: int):
  parquet = pq.ParquetFile(path)
  schema = parquet.schema_arrow
  if text_key not in schema.names:
    raise errors.InputError(f'{path}: no column {text_key!r} (data.text_key); it has {schema.names[:10]}.')
  kind = schema.field(text_key).type
  if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)
          or pa.types.is_large_binary(kind) or pa.types.is_string_view(kind)):
    raise errors.InputError(f'{path}: column {text_key!r} (data.text_key) holds {kind}, not text.')
  n = 0
  for group in range(parquet.num_row_groups):
    rows = parquet.metadata.row_group(group).num_rows
    if n + rows <= start:  # Finished before a resume: not even read.
      n += rows
      continue
    for batch in parquet.iter_batches(batch_size=_PARQUET_BATCH_ROWS, row_groups=[group], columns=[text_key]):
      for value in batch.column(0).to_pylist():
        n += 1
        if n > start:
          yield (n, *_text_of(value, text_key, schema.names))
