"""Pretokenized splits: a split's documents tokenized once, in worker processes, into one token file that every
later run reads by position instead of encoding the texts again (`./run.sh pretokenize`).

The file is the split's token stream as concat-and-chunk rows read it (lm/data/rows.py `token_stream`: each
document after tokenizers.document_start and followed by EOS), so a run reads each row straight from the file
(`TokenFile`, one pread a row); the documents are ranges of it by their offsets. Tokens are uint16 where the
vocabulary fits (nanoGPT's train.bin, Levanter's cache), int32 otherwise.

A directory is keyed by a hash of the prepared dataset's path, the split, the tokenizer's content (`to_dict`:
a SentencePiece model's sha256, a char vocabulary) and data.split_identifiers, so a changed tokenizer or dataset
finds no directory and tokenizes again; stale tokens are never read. Layout, under the data directory:

    pretokenized/<split>-<key>/             finished: tokens.bin, offsets.npy, manifest.json
    pretokenized/<split>-<key>.building/    meanwhile: shard-NNNNN.bin, shard-NNNNN.npy, shard-NNNNN.json
    pretokenized/<split>-<key>.lock         one writer at a time

Records are cut into shards of `SHARD_RECORDS`, tokenized in parallel; each shard is finished by its manifest,
written last, so a killed pretokenization continues after the shards it finished. The shards are then joined
into tokens.bin and the folder renamed into place: a finished directory is complete, or absent.

Only document tasks (data.task 'lm' and 'span_corruption') read documents; seq2seq pairs are encoded at each
start, as before. Packed pieces and span-corruption chunks are read from the file when asked for too
(rows.DocumentPieces).
"""

import fcntl
import hashlib
import json
import multiprocessing
import os
import shutil
import tempfile
import time
from typing import NamedTuple
import weakref

import ml_collections
import numpy as np

from lm import errors
from lm import tokenizers
from lm.data import datasets
from lm.data import tasks

FORMAT = 1  # Part of the key: a change of layout or framing makes new directories.
SHARD_RECORDS = 16_384  # Records per shard: a unit of work and of resumption.
_READ_RECORDS = 256  # Records a worker holds at once.
_DIRECTORY = 'pretokenized'


class TokenFile:
  """A token file read by position: `len` and slices of ids (arrays of the file's dtype), each slice one pread.

  Not a memory map: mapped pages that rows touch count as the reading process's resident memory, and random rows
  over a 4 GB file held ~4 GB of it (`./run.sh bench data --scale`); reads leave those pages to the kernel's page
  cache. Pickles as its path, so grain's worker processes open the file themselves.
  """

  def __init__(self, path: str, dtype: str, length: int):
    self.path, self.dtype, self._len, self._fd = path, np.dtype(dtype), length, None

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: slice) -> np.ndarray:
    if not isinstance(index, slice) or index.step not in (None, 1):
      raise TypeError(f'TokenFile reads contiguous slices of ids, not {index!r}')
    start, stop, _ = index.indices(self._len)
    if stop <= start:
      return np.zeros(0, self.dtype)
    if self._fd is None:
      self._fd = os.open(self.path, os.O_RDONLY)
      weakref.finalize(self, os.close, self._fd)  # Not __del__: at interpreter exit `os` may be gone.
    size = self.dtype.itemsize
    return np.frombuffer(os.pread(self._fd, (stop - start) * size, start * size), self.dtype)

  def __reduce__(self):
    return TokenFile, (self.path, self.dtype.str, self._len)


class Pretokenized(NamedTuple):
  """A finished directory, opened: the stream, document offsets into it and the manifest."""
  stream: TokenFile  # [tokens], uint16 or int32.
  offsets: np.ndarray  # int64 [documents + 1]: document i is stream[offsets[i]:offsets[i + 1]], framing included.
  manifest: dict
  directory: str


class Documents:
  """The documents of a token file, as ids without their framing, each read when indexed."""

  def __init__(self, stream: TokenFile, offsets: np.ndarray, start_len: int):
    self._stream, self._offsets, self._start_len = stream, offsets, start_len

  def __len__(self) -> int:
    return len(self._offsets) - 1

  def __getitem__(self, i: int) -> np.ndarray:
    if not 0 <= i < len(self):
      raise IndexError(f'document {i} outside [0, {len(self)})')
    return self._stream[self._offsets[i] + self._start_len:self._offsets[i + 1] - 1]

  def __iter__(self):
    return (self[i] for i in range(len(self)))

  def framed(self, i: int, start: int, stop: int) -> np.ndarray:
    """Tokens [start, stop) of document i with its framing (document start, eos) as the file holds it: one read of
    those tokens alone."""
    begin = int(self._offsets[i])
    return self._stream[begin + start:min(begin + stop, int(self._offsets[i + 1]))]

  def lengths(self) -> np.ndarray:
    """int64 [documents]: each document's ids, from the offsets alone (nothing read)."""
    return np.diff(self._offsets) - self._start_len - 1


def token_dtype(vocab_size: int) -> np.dtype:
  return np.dtype(np.uint16) if vocab_size <= 1 << 16 else np.dtype(np.int32)


def content(data_config, tokenizer, split: str) -> dict:
  """What a split's document ids depend on: the prepared dataset (its path inside the data directory, which
  names its version and, for text_files and local, its files' sizes and times), the split, the feature read
  (`record_texts`), identifier splitting (`model_input`) and the tokenizer's content. tokenized.py's cache is
  keyed by it too."""
  dataset = os.path.relpath(str(datasets.make_builder(data_config).data_path),
                            datasets.data_dir(data_config.data_dir))  # A copied data directory keeps its keys.
  return {'dataset': dataset, 'split': split, 'text_key': data_config.text_key,
          'split_identifiers': bool(data_config.split_identifiers), 'tokenizer': tokenizer.to_dict(),
          'format': FORMAT}


def key(data_config, tokenizer, split: str) -> str:
  return hashlib.sha256(json.dumps(content(data_config, tokenizer, split), sort_keys=True).encode()).hexdigest()[:16]


def directory(data_config, tokenizer, split: str) -> str:
  name = f'{split}-{key(data_config, tokenizer, split)}'
  return os.path.join(datasets.data_dir(data_config.data_dir), _DIRECTORY, name)


def load(data_config, tokenizer, split: str) -> Pretokenized | None:
  """The finished pretokenization of `split` for this dataset and tokenizer, opened; None if there is none."""
  path = directory(data_config, tokenizer, split)
  manifest_path = os.path.join(path, 'manifest.json')
  if not os.path.exists(manifest_path):
    return None
  manifest = tokenizers.read_json_object(manifest_path)
  tokens_path = os.path.join(path, 'tokens.bin')
  dtype = np.dtype(manifest['dtype'])
  if os.path.getsize(tokens_path) != manifest['tokens'] * dtype.itemsize:
    raise errors.InputError(f'{tokens_path} holds {os.path.getsize(tokens_path)} bytes, not the '
                            f"{manifest['tokens']} {dtype} tokens its manifest says: delete {path} and run "
                            '`./run.sh pretokenize` again')
  return Pretokenized(TokenFile(tokens_path, dtype.str, manifest['tokens']),
                      np.load(os.path.join(path, 'offsets.npy')), manifest, path)


def pretokenize(data_config, tokenizer, split: str, *, num_workers: int = 0,
                shard_records: int | None = None) -> Pretokenized:
  """Tokenizes `split` once into its directory (see the module docstring) and returns it opened.

  num_workers > 0 tokenizes the shards in that many spawned processes; 0, in this one. A finished directory is
  returned as it is; a half-written one continues after its finished shards.
  """
  tasks.check_task(data_config)
  shard_records = SHARD_RECORDS if shard_records is None else shard_records
  if shard_records < 1:
    raise errors.InputError(f'shard_records={shard_records}: a shard needs at least one record')
  if data_config.task == 'seq2seq':
    raise errors.InputError("pretokenize covers documents (data.task 'lm' or 'span_corruption'); seq2seq pairs "
                            'are encoded when a run starts')
  done = load(data_config, tokenizer, split)
  if done is not None:
    return done
  final = directory(data_config, tokenizer, split)
  os.makedirs(os.path.dirname(final), exist_ok=True)
  with open(final + '.lock', 'a') as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)  # Released when the file closes; the holder before us may have finished.
    done = load(data_config, tokenizer, split)
    if done is not None:
      return done
    _build(data_config, tokenizer, split, final, num_workers, shard_records)
  return load(data_config, tokenizer, split)


def pretokenize_splits(data_config, tokenizer, *, num_workers: int, shard_records: int = SHARD_RECORDS) -> list[str]:
  """`./run.sh pretokenize`: every split the dataset has, pretokenized; a line for each."""
  lines = []
  for split in datasets.SPLITS:
    if split not in datasets.prepare(data_config).info.splits:
      continue
    done = load(data_config, tokenizer, split) is not None
    m = pretokenize(data_config, tokenizer, split, num_workers=num_workers, shard_records=shard_records)
    workers = m.manifest.get('workers')
    what = ('already pretokenized' if done else f"in {m.manifest['seconds']} s "
            + (f'with {workers} worker processes' if workers else 'in this process (one shard)'))
    lines.append(f"pretokenized {split}: {m.manifest['documents']:,} documents, {m.manifest['tokens']:,} "
                 f"{np.dtype(m.manifest['dtype']).name} tokens, {what}: {m.directory}")
  return lines


def _build(data_config, tokenizer, split: str, final: str, num_workers: int, shard_records: int) -> None:
  start = time.perf_counter()
  building = final + '.building'
  if os.path.exists(final):
    raise errors.InputError(f'{final} exists without its manifest.json: delete it and pretokenize again')
  if os.path.exists(os.path.join(building, 'manifest.json')):  # Killed between the manifest and the rename.
    os.rename(building, final)
    return
  os.makedirs(building, exist_ok=True)
  num_records = len(datasets.load_split(data_config, split))  # Prepares the dataset first, once, here.
  ranges = [(i, s, min(s + shard_records, num_records))
            for i, s in enumerate(range(0, num_records, shard_records))] or [(0, 0, 0)]
  finished = {i for i, s, e in ranges if _finished(building, i, s, e)}
  todo = [r for r in ranges if r[0] not in finished]
  dtype = token_dtype(tokenizer.vocab_size)
  with tempfile.TemporaryDirectory() as tokenizer_dir:
    tokenizer.save(tokenizer_dir)  # Workers load it: a SentencePiece processor does not pickle.
    jobs = [(data_config.to_dict(), tokenizer_dir, split, building, dtype.str, *r) for r in todo]
    workers = min(num_workers, len(jobs)) if len(jobs) > 1 else 0
    if workers:
      with multiprocessing.get_context('spawn').Pool(workers) as pool:
        for _ in pool.imap_unordered(_tokenize_shard, jobs):
          pass
    else:
      for job in jobs:
        _tokenize_shard(job)
  manifests = [tokenizers.read_json_object(_shard_path(building, i, 'json')) for i, _, _ in ranges]
  lengths = np.concatenate([np.load(_shard_path(building, i, 'npy')) for i, _, _ in ranges])
  if sum(m['documents'] for m in manifests) != len(lengths) or sum(m['tokens'] for m in manifests) != lengths.sum():
    raise errors.InputError(f'the shards in {building} disagree with their manifests: delete it and pretokenize '
                            'again')
  with open(os.path.join(building, 'tokens.bin'), 'wb') as out:
    for i, _, _ in ranges:  # Each shard's tokens removed once copied: the disk holds the tokens about once.
      with open(_shard_path(building, i, 'bin'), 'rb') as shard:
        shutil.copyfileobj(shard, out, 1 << 24)
      os.remove(_shard_path(building, i, 'bin'))  # Killed from here on, the removed shards are tokenized again.
  np.save(os.path.join(building, 'offsets.npy'), np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64))
  for i, _, _ in ranges:
    for suffix in ('npy', 'json'):
      os.remove(_shard_path(building, i, suffix))
  manifest = {'key': os.path.basename(final), 'split': split, 'dtype': dtype.str, 'records': num_records,
              'documents': int(len(lengths)), 'tokens': int(lengths.sum()),
              'bytes': sum(m['bytes'] for m in manifests), 'tokenizer': tokenizer.to_dict(),
              'shards': len(ranges), 'workers': workers, 'seconds': round(time.perf_counter() - start, 2)}
  _write_json(os.path.join(building, 'manifest.json'), manifest)
  os.rename(building, final)  # Finished only now, whole.


def _finished(building: str, index: int, start: int, end: int) -> bool:
  """Shard `index` holds records [start, end): its manifest (written last) says so and its tokens are there (the
  join removes them). A shard of another size (another --shard_records) is tokenized again."""
  path = _shard_path(building, index, 'json')
  if not (os.path.exists(path) and os.path.exists(_shard_path(building, index, 'bin'))):
    return False
  return tokenizers.read_json_object(path)['records'] == [start, end]


def _shard_path(building: str, index: int, suffix: str) -> str:
  return os.path.join(building, f'shard-{index:05d}.{suffix}')


def framed_document(text: str, data_config, tokenizer) -> np.ndarray:
  """int32 ids of one document as the token stream holds it: tokenizers.document_start, the text as the model reads
  it (tasks.model_input), eos. What this file stores and what a streaming pipeline reads (pipeline.py)."""
  ids = np.asarray(tokenizer.encode(tasks.model_input(text, data_config)), np.int32)
  return np.concatenate([np.array(tokenizers.document_start(tokenizer), np.int32), ids,
                         np.array([tokenizer.eos_id], np.int32)])


def _tokenize_shard(job: tuple) -> None:
  """Tokenizes records [start, end) into the shard's token file and document lengths, then its manifest. Records
  are read and their tokens written _READ_RECORDS at a time, so a worker's memory does not grow with the shard."""
  config_dict, tokenizer_dir, split, building, dtype, index, start, end = job
  data_config = ml_collections.ConfigDict(config_dict)
  tokenizer = tokenizers.load_tokenizer(tokenizer_dir)
  source = datasets.load_split(data_config, split)
  lengths, size = [], 0
  part = _shard_path(building, index, 'bin') + '.part'
  with open(part, 'wb') as out:
    for read in range(start, end, _READ_RECORDS):
      for record in datasets.read_records(source, range(read, min(read + _READ_RECORDS, end))):
        for text in datasets.record_texts(record, data_config):
          framed = framed_document(text, data_config, tokenizer)
          framed.astype(dtype).tofile(out)
          lengths.append(len(framed))
          size += len(text.encode('utf-8'))
  tokens = sum(lengths)
  os.replace(part, _shard_path(building, index, 'bin'))
  with open(_shard_path(building, index, 'npy') + '.part', 'wb') as f:
    np.save(f, np.array(lengths, np.int64))
  os.replace(_shard_path(building, index, 'npy') + '.part', _shard_path(building, index, 'npy'))
  _write_json(_shard_path(building, index, 'json'), {'records': [start, end], 'documents': len(lengths),
                                                     'tokens': int(tokens), 'bytes': size})


def _write_json(path: str, value: dict) -> None:
  with open(path + '.part', 'w') as f:
    json.dump(value, f, indent=1)
  os.replace(path + '.part', path)
