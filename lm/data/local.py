"""`local`: the user's corpus in the formats people download, converted once into ArrayRecord, then read by index.

data.path is a file, a directory or a glob of *.txt (a document per line), *.jsonl / *.json (a JSON object per
line, the text in data.text_key), each also .gz or .zst, and *.parquet (a document per row): sources.py reads
them. Records are `{'text': str, 'title': 'FILE:N'}` (FILE relative to data.path's folder, N its 1-based
line or row), in file and line order. It is not an extension of `text_files` because the two read a file
differently: text_files reads each file whole as one document and cuts a single file 90/10 by position (a few
small plain texts), while here a record is a line or a row, every file is streamed and splits are chosen record
by record.

Splits: if any file's name holds a held-out word (`valid`, `validation`, `val` or `dev`; `test`) between
non-letters, splits come by file (`c4-validation.00000-of-00008.json.gz` validates) and every other file trains.
Otherwise each record is held out by a salted hash of its title: data.validation_fraction of them validate,
data.test_fraction test. The choice is deterministic, needs no count of the records, and a file added later
leaves the others' choices as they were. As in text_files, a held-out split without records repeats the other
(its files are hard links to the other's: no space), so every split exists; a corpus with nothing held out, or a
fraction > 0 that holds out nothing, is an error.

A malformed record (bad JSON, no text field, a non-string text, bytes that are not UTF-8) is an InputError naming
its file and line; data.skip_bad_records=N skips up to N of them, recorded in the dataset's metadata.json and
printed when the dataset is first used in a process (`check_skipped`).

Conversion streams (records written as sources.py reads them, so memory does not grow with the corpus) into
chunks of at most _CHUNK_BYTES and _CHUNK_RECORDS in a work folder beside the dataset's, each finished by an
atomic manifest (`chunk-FFFFF-CCCCC.json`: its counts, the line it ended at, its skipped records). A killed
conversion continues after its last finished chunk; a chunk cut short has no manifest and is written again. At
the end the chunks are hard-linked into TFDS's layout inside TFDS's incomplete folder, which TFDS renames onto
the dataset's folder once dataset_info.json is written; only then is the work folder removed. So a dataset folder
either is finished or does not exist. The lock of datasets.prepare keeps it one writer:

    <data dir>/local/corpus_<hash>/1.0.0/                  the dataset (hash: files, sizes, mtimes, settings)
        local-train.array_record-00000-of-00003, ...       one shard per chunk and split
        dataset_info.json, features.json, metadata.json    metadata.json: files, skipped records
    <data dir>/local/corpus_<hash>/1.0.0.converting/       while converting: chunk-*.array_record, chunk-*.json
    <data dir>/local/corpus_<hash>/1.0.0.lock              datasets.prepare's lock
"""

import dataclasses
import glob
import hashlib
import json
import os
import re
import shutil
import sys
import time

from array_record.python import array_record_module
import tensorflow_datasets as tfds
from tensorflow_datasets.core import dataset_builder
from tensorflow_datasets.proto import tf_example_pb2
from tensorflow_datasets.proto import tf_feature_pb2

from lm import errors
from lm.config import check
from lm.config import check_held_out
from lm.data import sources

# Held-out words in file names; a file with none trains.
_FILE_SPLITS = (('validation', re.compile(r'(?<![a-z])(valid|validation|val|dev)(?![a-z])', re.I)),
                ('test', re.compile(r'(?<![a-z])test(?![a-z])', re.I)))
_SPLITS = ('train', 'validation', 'test')  # datasets.SPLITS, which would import this module.
# Salts the hash that holds records out; change it (or the hash) and you must bump Local.VERSION.
_HOLD_OUT_SALT = b'lm.local'
# A chunk ends at this many serialized bytes or records: the unit a killed conversion loses, and one shard of each
# split it holds. The record bound bounds memory: an ArrayRecord writer keeps ~70 bytes per record until it closes.
_CHUNK_BYTES = 128 << 20
_CHUNK_RECORDS = 1 << 16
# group_size:1 as TFDS writes (each record readable on its own); one encoding thread, as the default pool holds
# twice the memory here for no speed (Python is the bottleneck).
_ARRAY_RECORD_OPTIONS = 'group_size:1,max_parallelism:1'
_PROGRESS_EVERY_S = 10.0
_REPORTED: set[str] = set()  # Datasets whose skipped records this process has printed.


@dataclasses.dataclass(eq=False)
class LocalConfig(tfds.core.BuilderConfig):
  files: tuple[str, ...] = ()  # Absolute paths, sorted.
  root: str = ''  # Titles name files relative to this folder (data.path, or the folder of its files).
  text_key: str = 'text'
  file_splits: tuple[str, ...] = ()  # Each file's split by its name, or () to hold out records by fraction.
  validation_fraction: float = 0.0
  test_fraction: float = 0.0


def split_of_file(path: str) -> str:
  """The split a file's name gives: 'validation' or 'test' by a held-out word in it, else 'train'."""
  name = os.path.basename(path)
  return next((split for split, word in _FILE_SPLITS if word.search(name)), 'train')


def held_out_split(title: str, validation_fraction: float, test_fraction: float) -> str:
  """The split of the record `title` when records are held out by fraction: a salted hash of the title, uniform
  in [0, 1), below validation_fraction validates, in the next test_fraction tests."""
  digest = hashlib.blake2b(title.encode('utf-8'), digest_size=8, key=_HOLD_OUT_SALT).digest()
  u = int.from_bytes(digest, 'little') / 2**64
  if u < validation_fraction:
    return 'validation'
  return 'test' if u < validation_fraction + test_fraction else 'train'


def local_config(data_config, data_dir: str) -> LocalConfig:
  """The builder config of data_config's corpus; its name hashes what the converted data depends on."""
  d = data_config
  check_held_out(d)  # validate() did, unless a caller built the data config by hand.
  files = sources.resolve_files(d.path, exclude=data_dir)
  file_splits = tuple(split_of_file(f) for f in files)
  fractions = (0.0, 0.0)
  if set(file_splits) == {'train'}:  # No file is held out: records are.
    file_splits, fractions = (), (float(d.validation_fraction), float(d.test_fraction))
    check(any(fractions), 'data.validation_fraction', d.validation_fraction,
          f'and data.test_fraction={d.test_fraction} hold nothing out, and no file of data.path={d.path!r} is named '
          'by split (*validation*, *test*): a run needs held-out records')
  uses_key = any(sources.file_kind(f)[0] != 'text' for f in files)
  # Keyed by content stamps, so an edited corpus is converted anew into its own folder, never served stale.
  # skip_bad_records is no part of it: the records kept do not depend on it (check_skipped holds a run to it).
  # Titles, and so the held-out choice, name files relative to data.path's folder, or a glob's fixed folder (the
  # parts before its first wildcard), never the matches': adding a file keeps every other file's titles.
  full = os.path.abspath(os.path.expanduser(d.path))
  if os.path.isdir(full):
    root = full
  elif glob.has_magic(full):
    parts = full.split(os.sep)
    root = os.sep.join(parts[:next(i for i, part in enumerate(parts) if glob.has_magic(part))]) or os.sep
  else:
    root = os.path.dirname(full)
  stamps = [(f, os.stat(f).st_size, os.stat(f).st_mtime_ns) for f in files]
  identity = [stamps, d.text_key if uses_key else '', file_splits, fractions, root]
  digest = hashlib.sha256(json.dumps(identity).encode()).hexdigest()[:16]
  return LocalConfig(name=f'corpus_{digest}', files=tuple(files), root=root, text_key=d.text_key,
                     file_splits=file_splits, validation_fraction=fractions[0], test_fraction=fractions[1])


def bad_record_message(location: str, problem: str, allowed: int) -> str:
  """The error of a malformed record beyond the data.skip_bad_records=`allowed` that may be skipped."""
  if not allowed:
    return (f'{location}: {problem}. Fix or remove it, or let --config.data.skip_bad_records=N skip up to N '
            'malformed records.')
  return f'{location}: {problem}. It is malformed record {allowed + 1}, one more than data.skip_bad_records={allowed}.'


def serialize(text: str, title: str) -> bytes:
  """A record as the tf.train.Example TFDS writes for {'text', 'title'} Text features, 3x faster than its writer."""
  def feature(value: str):
    return tf_feature_pb2.Feature(bytes_list=tf_feature_pb2.BytesList(value=[value.encode('utf-8')]))
  return tf_example_pb2.Example(features=tf_feature_pb2.Features(
      feature={'text': feature(text), 'title': feature(title)})).SerializeToString(deterministic=True)


def features() -> tfds.features.FeaturesDict:
  return tfds.features.FeaturesDict({'text': tfds.features.Text(), 'title': tfds.features.Text()})


class _Chunk:
  """One chunk of a file's records: an ArrayRecord file per split it holds, then its manifest."""

  def __init__(self, work_dir: str, file_index: int, chunk_index: int):
    self.stem = os.path.join(work_dir, f'chunk-{file_index:05d}-{chunk_index:05d}')
    self.manifest = {'file': file_index, 'chunk': chunk_index, 'counts': {}, 'skipped': []}
    self.bytes = self.records = 0
    self._writers = {}

  def write(self, split: str, record: bytes) -> None:
    if split not in self._writers:
      self._writers[split] = array_record_module.ArrayRecordWriter(f'{self.stem}.{split}.array_record',
                                                                   _ARRAY_RECORD_OPTIONS)
    self._writers[split].write(record)
    self.manifest['counts'][split] = self.manifest['counts'].get(split, 0) + 1
    self.bytes += len(record)
    self.records += 1

  def full(self) -> bool:
    return self.bytes >= _CHUNK_BYTES or self.records >= _CHUNK_RECORDS

  def finish(self, end: int | None, last: bool) -> dict:
    """Closes the files, then writes the manifest that makes the chunk count: `end` lines read, `last` of its file."""
    for writer in self._writers.values():
      writer.close()
    self.manifest.update(end=end, last=last)
    with open(self.stem + '.json.tmp', 'w') as f:
      json.dump(self.manifest, f)
    os.replace(self.stem + '.json.tmp', self.stem + '.json')
    return self.manifest


def _chunk_path(manifest: dict, work_dir: str, suffix: str) -> str:
  return os.path.join(work_dir, f'chunk-{manifest["file"]:05d}-{manifest["chunk"]:05d}{suffix}')


def _chunk_files(manifest: dict, work_dir: str) -> list[str]:
  return [_chunk_path(manifest, work_dir, suffix)
          for suffix in ['.json'] + [f'.{split}.array_record' for split in manifest['counts']]]


def _finished_chunks(work_dir: str) -> dict[int, list[dict]]:
  """File index -> the manifests of its finished chunks, in order; deletes every other file (a chunk cut short)."""
  found = {}
  for name in os.listdir(work_dir):
    if name.endswith('.json'):
      try:
        with open(os.path.join(work_dir, name)) as f:
          manifest = json.load(f)
        found[manifest['file'], manifest['chunk']] = manifest
      except (ValueError, KeyError):
        pass  # Unreadable: left for the deletion below.
  finished = {}
  for file_index, chunk_index in sorted(found):
    chunks = finished.setdefault(file_index, [])
    if chunk_index == len(chunks):  # Only an unbroken run from chunk 0 counts.
      chunks.append(found[file_index, chunk_index])
  keep = {path for chunks in finished.values() for m in chunks for path in _chunk_files(m, work_dir)}
  for name in os.listdir(work_dir):
    if os.path.join(work_dir, name) not in keep:
      os.remove(os.path.join(work_dir, name))
  return finished


def convert(config: LocalConfig, work_dir: str, allowed_bad: int) -> list[dict]:
  """Streams config's files into chunks in work_dir, continuing after the chunks a killed conversion finished;
  returns every chunk's manifest in file order. Raises the (allowed_bad + 1)-th malformed record's error."""
  os.makedirs(work_dir, exist_ok=True)
  finished = _finished_chunks(work_dir)
  skipped = [s for chunks in finished.values() for m in chunks for s in m['skipped']]
  if finished:
    done = sum(chunks[-1]['last'] for chunks in finished.values())
    print(f'local: continuing the conversion in {work_dir}: {done} of {len(config.files)} files done', file=sys.stderr)
  manifests, records, reported = [], 0, time.monotonic()
  for index, path in enumerate(config.files):
    chunks = finished.get(index, [])
    manifests += chunks
    if chunks and chunks[-1]['last']:
      continue
    start = chunks[-1]['end'] if chunks else 0
    title_prefix = os.path.relpath(path, config.root) + ':'
    file_split = config.file_splits[index] if config.file_splits else ''
    chunk = _Chunk(work_dir, index, len(chunks))
    for n, text, problem in sources.read_records(path, config.text_key, start):
      if problem:
        location = sources.location(path, n)
        if len(skipped) >= allowed_bad:
          raise errors.InputError(bad_record_message(location, problem, allowed_bad))
        skipped.append([location, problem])
        chunk.manifest['skipped'].append([location, problem])
        continue
      title = title_prefix + str(n)
      split = file_split or held_out_split(title, config.validation_fraction, config.test_fraction)
      chunk.write(split, serialize(text, title))
      records += 1
      if chunk.full():
        manifests.append(chunk.finish(end=n, last=False))
        chunk = _Chunk(work_dir, index, chunk.manifest['chunk'] + 1)
    manifests.append(chunk.finish(end=None, last=True))
    if time.monotonic() - reported > _PROGRESS_EVERY_S:
      print(f'local: {index + 1} of {len(config.files)} files converted ({records:,} records this time)',
            file=sys.stderr, flush=True)
      reported = time.monotonic()
  return manifests


class Local(dataset_builder.FileReaderBuilder, skip_registration=True):
  """The user's corpus (LocalConfig), converted by `convert` rather than TFDS's writer: that one holds up to 1 GB
  in memory and, unshuffled, sorts one bucket of the whole split, and cannot continue after a kill."""

  VERSION = tfds.core.Version('1.0.0')

  def __init__(self, *, skip_bad_records: int = 0, **kwargs):
    # How many malformed records the conversion skips; not part of the dataset identity (see local_config).
    self._skip_bad_records = skip_bad_records
    super().__init__(**kwargs)
    self.work_dir = os.fspath(self.data_dir).rstrip('/') + '.converting'  # Stable: a rerun finds it.

  def _info(self) -> tfds.core.DatasetInfo:
    return tfds.core.DatasetInfo(builder=self, features=features(), disable_shuffling=True,
                                 metadata=tfds.core.MetadataDict())

  def _download_and_prepare(self, dl_manager, download_config=None):
    del dl_manager, download_config  # Nothing to download.
    c = self.builder_config
    self._remove_stale_incomplete_dirs()
    manifests = convert(c, self.work_dir, self._skip_bad_records)
    shards = {}  # split -> [(chunk file, records)]
    for m in manifests:
      for split, count in m['counts'].items():
        shards.setdefault(split, []).append((_chunk_path(m, self.work_dir, f'.{split}.array_record'), count))
    self._check_splits(shards)
    repeats = [(split, other) for split, other in (('validation', 'test'), ('test', 'validation'))
               if split not in shards]
    for split, other in repeats:
      shards[split] = shards[other]
    split_infos = []
    for split in _SPLITS:
      template = self._get_filename_template(split_name=split)
      for i, (chunk_path, _) in enumerate(shards[split]):
        _link(chunk_path, os.fspath(template.sharded_filepath(shard_index=i, num_shards=len(shards[split]))))
      split_infos.append(tfds.core.SplitInfo(
          name=split, shard_lengths=[count for _, count in shards[split]], filename_template=template,
          num_bytes=sum(os.path.getsize(path) for path, _ in shards[split])))
    self.info.set_splits(tfds.core.SplitDict(split_infos))
    self.info.metadata.update(
        source=c.root, files=[os.path.relpath(f, c.root) for f in c.files],
        splits=('by file name' if c.file_splits else
                f'held out by record: validation {c.validation_fraction}, test {c.test_fraction}')
        + ''.join(f'; {split} repeats {other}' for split, other in repeats),
        skipped_records=[s for m in manifests for s in m['skipped']])

  def _check_splits(self, shards: dict) -> None:
    c = self.builder_config
    total = sum(count for chunks in shards.values() for _, count in chunks)
    problem = '' if 'train' in shards else f'none of its {total:,} records trains'
    for split, fraction in (('validation', c.validation_fraction), ('test', c.test_fraction)):
      if fraction and split not in shards:
        problem = problem or (f'data.{split}_fraction={fraction} held out none of its {total:,} records; raise it, '
                              f'or name files by split (*{split}*)')
    if not problem and not {'validation', 'test'} & set(shards):  # Held-out files without records.
      problem = 'its held-out files hold no records'
    if problem:
      shutil.rmtree(self.work_dir)  # Converting again gives the same: nothing is worth resuming.
      raise errors.InputError(f'data.path {c.root!r}: {problem}.')

  def _remove_stale_incomplete_dirs(self) -> None:
    """TFDS's incomplete folders of killed conversions (random names; datasets.prepare's lock is held)."""
    current = os.path.abspath(os.fspath(self.data_dir))  # TFDS's incomplete folder of this conversion.
    for stale in glob.glob(os.path.join(os.path.dirname(current), f'incomplete.*_{self.version}')):
      if os.path.abspath(stale) != current:
        shutil.rmtree(stale, ignore_errors=True)

  def _post_download_and_prepare_hook(self) -> None:
    # The dataset folder now exists under its final name; the chunks live on in its hard links.
    shutil.rmtree(self.work_dir, ignore_errors=True)


def _link(source: str, target: str) -> None:
  try:
    os.link(source, target)
  except OSError:  # A filesystem without hard links.
    shutil.copyfile(source, target)


def check_skipped(builder: Local, allowed: int) -> None:
  """Holds a run to its data.skip_bad_records: raises if the conversion skipped more (under a larger value), else
  prints the count once per process."""
  skipped = builder.info.metadata.get('skipped_records', [])
  if len(skipped) > allowed:
    location, problem = skipped[allowed]
    raise errors.InputError(bad_record_message(location, problem, allowed)
                            + f' (Converted with more skipped: {builder.data_dir}/metadata.json lists them.)')
  if skipped and builder.data_dir not in _REPORTED:
    _REPORTED.add(builder.data_dir)
    shown = '; '.join(f'{location}: {problem}' for location, problem in skipped[:3])
    print(f"data.name='local' skipped {len(skipped)} malformed record{'s' * (len(skipped) > 1)} "
          f'(data.skip_bad_records={allowed}; {builder.data_dir}/metadata.json lists them): {shown}'
          + ('; ...' if len(skipped) > 3 else ''), flush=True)
