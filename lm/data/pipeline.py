"""grain iterators over a split's rows: the train iterator (shuffled, process-sharded, resumable) and eval
batches (one ordered pass).

Each reads its split tokenized up front, once (lm/data/tokenized.py), unless it streams (below). Rows are built
as lm/data/rows.py says:
concat-and-chunk rows (data.task 'lm', data.pack False) by random access into the split's token stream; in
every other mode (data.pack, data.task 'seq2seq' or 'span_corruption') each unit (an LM piece, a seq2seq pair,
a span-corruption chunk) becomes an example (tasks.py), and examples are padded into rows of their own or
first-fit packed, the packer's state being part of the iterator's:

    units -> [process shard] -> shuffle -> repeat -> (task map)
          -> pack or pad -> batch -> [worker processes]

The train iterator's `stats` count its split's rows (lm/data/stats.py) from the same ids.

data.streaming (train only, where the split has no token file) never reads the split whole: records are read by
index and tokenized in the pipeline, each cut into the same rows or units as above, and shuffled in windows:

    records -> [process shard] -> shuffle -> repeat -> tokenize, cut (and task map)
            -> rows (rows.StreamChunks) or examples (rows.Flatten) -> window shuffle
            -> [pack or pad] -> batch -> [worker processes]

Its `stats` count the batches as they are drawn (TrainIterator.stats).

Past ~450 lines: the whole-split and the streamed paths build the same units with the same task maps and end in
one TrainIterator, and a test holds each to the other's batches, so they change together.
"""

import functools

import grain
import numpy as np

from lm import errors
from lm import tokenizers
from lm.config import check
from lm.data import datasets
from lm.data import pretokenized
from lm.data import rows
from lm.data import stats as stats_lib
from lm.data import tasks
from lm.data import tokenized

_EVAL_SEED = 0  # Span corruption noise of eval passes.


def make_train_iterator(data_config, tokenizer, *, batch_size: int, seed: int,
                        process_index: int = 0, process_count: int = 1,
                        num_epochs: int | None = None) -> 'TrainIterator':
  """Shuffled batches of this process's rows; a grain DatasetIterator.

  Process p owns rows (concat-and-chunk) or examples (every other mode) p, p + P, p + 2P, ... of the split (P
  processes), records when streaming (data.streaming), and shuffles them afresh each epoch from `seed` (unless
  data.shuffle is False). The iterator's `get_state()` / `set_state()` (or grain.checkpoint.CheckpointSave/Restore
  in orbax) resume at exactly the next batch, packing state included, given the same data.num_workers and
  data.shuffle (else set_state raises). Endless unless `num_epochs` is given (tests, benchmarks); then a short last
  batch is padded with zero-weight rows. In the example modes each of data.num_workers > 0 workers batches its own
  share, so each worker's last batch may be padded, not only the last one.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} outside '
                     f'[0, process_count={process_count}).')
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive; got {batch_size}.')
  tasks.check_task(data_config)
  if data_config.streaming and pretokenized.load(data_config, tokenizer, 'train') is None:
    it = _streamed_train_rows(data_config, tokenizer, batch_size=batch_size, seed=seed,
                              shard=(process_index, process_count), num_epochs=num_epochs)
    if data_config.num_workers > 0:
      it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.num_workers))
    return TrainIterator(iter(it), data_config.num_workers, None, eos_id=tokenizer.eos_id,
                         examples=data_config.task != 'lm' or data_config.pack, shuffle=data_config.shuffle)
  ids = tokenized.tokenize_split(data_config, tokenizer, 'train')
  stats = stats_lib.count(data_config, ids, train=True,  # Of the whole split, all processes' rows.
                          start_len=len(tokenizers.document_start(tokenizer)))
  if data_config.task != 'lm' or data_config.pack:
    ds = _example_dataset(data_config, tokenizer, ids, 'train', seed=seed,
                          shuffle=data_config.shuffle, num_epochs=num_epochs,
                          shard=(process_index, process_count))
    it = rows.pad_or_pack(ds, data_config, batch_size=batch_size, seed=seed,
                          finite=num_epochs is not None)
  else:
    it = _chunked_train_rows(data_config, _token_stream(ids, tokenizer),
                             batch_size=batch_size, seed=seed, shard=(process_index, process_count),
                             num_epochs=num_epochs)
  if data_config.num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=data_config.num_workers))
  return TrainIterator(iter(it), data_config.num_workers, stats, shuffle=data_config.shuffle)


def _chunked_train_rows(data_config, tokens: np.ndarray, *, batch_size: int, seed: int,
                        shard: tuple[int, int], num_epochs: int | None) -> grain.IterDataset:
  """Concat-and-chunk train batches: full rows only, this process's shard."""
  chunked = rows.ChunkedStream(tokens, data_config.seq_len, keep_partial=False)
  index, count = shard
  check(len(chunked) >= count, 'data.seq_len', data_config.seq_len,
        f"cuts the train split's {len(tokens)} tokens into {len(chunked)} rows of seq_len + 1 = "
        f'{data_config.seq_len + 1} tokens, fewer than process_count = {count}: use more text or a smaller '
        'seq_len')
  # Row numbers, shuffled then repeated (grain reseeds the shuffle each epoch: seed + epoch), batched, and each
  # batch's rows read at once (the rows, and the state, of shuffling the rows themselves).
  ds = grain.MapDataset.range(len(chunked))[index::count]
  ds = ds.shuffle(seed=seed) if data_config.shuffle else ds
  ds = ds.repeat(num_epochs).batch(
      batch_size, drop_remainder=num_epochs is None).map(chunked.full_rows)
  if num_epochs is not None:
    ds = ds.map(functools.partial(rows.pad_batch, batch_size=batch_size))
  # A small read-ahead in threads overlaps batch assembly with the step.
  return ds.to_iter_dataset(grain.ReadOptions(num_threads=2,
                                              prefetch_buffer_size=8))


def _streamed_train_rows(data_config, tokenizer, *, batch_size: int, seed: int, shard: tuple[int, int],
                         num_epochs: int | None) -> grain.IterDataset:
  """Train batches with the split never read whole (data.streaming): this process's records, shuffled by index
  over the whole split each epoch, read datasets.READ_GROUP at a time and tokenized as they are read (in the
  workers, with data.num_workers), then, in windows of data.streaming_shuffle_rows, the rows (concat-and-chunk,
  cut as the records arrive: rows.StreamChunks) or the examples (every other mode, each group's in turn:
  rows.Flatten) shuffled; examples are then padded or packed as in the whole-split path. The trade-off against
  it, which shuffles rows or examples over the split: those of one document stay within a window of each other.
  data.shuffle=False shuffles neither records nor windows. Exact resume: the iterators' states hold the group
  position, where the tokens left over start or how many of a group's items were emitted, the window's and the
  packer's."""
  source = datasets.load_split(data_config, 'train')
  index, count = shard
  check(len(source) >= count, 'data.streaming', True, f'needs at least process_count = {count} train records, '
        f'has {len(source)}')
  # Groups of record indices, each read in one batched read.
  records = grain.MapDataset.range(len(source))[index::count]
  records = records.shuffle(seed=seed) if data_config.shuffle else records
  records = records.repeat(num_epochs).batch(datasets.READ_GROUP).map(datasets.RecordsAt(source))
  read = grain.ReadOptions(num_threads=2, prefetch_buffer_size=8)
  def window(ds: grain.IterDataset) -> grain.IterDataset:
    if not data_config.shuffle:
      return ds
    return grain.experimental.WindowShuffleIterDataset(ds, window_size=data_config.streaming_shuffle_rows, seed=seed)

  if data_config.task == 'lm' and not data_config.pack:
    ds = window(rows.StreamChunks(records.map(_RecordTokens(data_config, tokenizer)).to_iter_dataset(read),
                                  data_config.seq_len))
    ds = ds.batch(batch_size, drop_remainder=num_epochs is None)
    return ds.map(functools.partial(rows.pad_batch, batch_size=batch_size)) if num_epochs is not None else ds
  examples = window(rows.Flatten(_record_examples(data_config, tokenizer, records, seed=_fold_in(seed, index))
                                 .to_iter_dataset(read)))
  return rows.pad_or_pack(examples, data_config, batch_size=batch_size, seed=seed, finite=num_epochs is not None,
                          counts=True)


class _RecordTokens:
  """(records' documents as the stream holds them (pretokenized.framed_document), one after the other; the UTF-8
  bytes of their texts)."""

  def __init__(self, data_config, tokenizer):
    self._config, self._tokenizer = data_config, tokenizer

  def __call__(self, records: list[dict]) -> tuple[np.ndarray, int]:
    texts = [text for record in records for text in datasets.record_texts(record, self._config)]
    return (np.concatenate([pretokenized.framed_document(text, self._config, self._tokenizer) for text in texts]
                           or [np.zeros(0, np.int32)]), _utf8_bytes(texts))


def _utf8_bytes(texts) -> int:
  return sum(len(text.encode('utf-8')) for text in texts)


def _record_counted(examples: list[dict], texts: list[str], dropped: int, lost: int = 0) -> list[dict]:
  """A record's examples, the first carrying the record's own counts (its bytes, and its `dropped` documents that
  gave no example, counted as documents too, with the `lost` tokens they held); a record without examples gives an
  item of those counts alone, which rows.Flatten adds to the next example's."""
  counts = dict(bytes=_utf8_bytes(texts), dropped=dropped, documents=dropped, truncated=lost)
  if not examples:
    return [rows.counts_only(**counts)]
  return [rows.add_counts(examples[0], rows.counts_only(**counts)), *examples[1:]]


def _record_examples(data_config, tokenizer, groups: grain.MapDataset, *, seed: int) -> grain.MapDataset:
  """Each group of records' examples (a list), made as the whole-split path makes its units' (`_units`,
  `_example_dataset`), each carrying its accounting (rows.with_counts). Span corruption draws a group's noise from
  an rng keyed by the group's index (random_map, after repeat: each epoch's differs), its records' chunks in order;
  `seed` is this process shard's, so shards draw different noise."""
  bound = dict(data_config=data_config, tokenizer=tokenizer)
  if data_config.task == 'lm':
    return groups.map(functools.partial(_each_record, _record_lm_examples, **bound))
  if data_config.task == 'seq2seq':
    return groups.map(functools.partial(_each_record, _record_seq2seq_examples, **bound))
  _check_sentinels(data_config, tokenizer)
  return groups.random_map(functools.partial(_each_record_span, **bound), seed=seed)


def _each_record(examples_of, records: list[dict], **kwargs) -> list[dict]:
  return [example for record in records for example in examples_of(record, **kwargs)]


def _each_record_span(records: list[dict], rng: np.random.Generator, **kwargs) -> list[dict]:
  return _each_record(_record_span_examples, records, rng=rng, **kwargs)


def _record_lm_examples(record: dict, *, data_config, tokenizer) -> list[dict]:
  """The LM pieces of a record's framed documents (tasks.lm_pieces, as rows.DocumentPieces cuts them)."""
  examples, texts, dropped, lost = [], datasets.record_texts(record, data_config), 0, 0
  for text in texts:
    framed = pretokenized.framed_document(text, data_config, tokenizer)
    pieces = tasks.lm_pieces(framed, data_config.seq_len)
    examples += [rows.with_counts(tasks.lm_example(piece), documents=int(i == len(pieces) - 1))
                 for i, piece in enumerate(pieces)]
    dropped, lost = dropped + (not pieces), lost + (0 if pieces else len(framed))  # An empty document's eos.
  return _record_counted(examples, texts, dropped, lost)


def _record_seq2seq_examples(record: dict, *, data_config, tokenizer) -> list[dict]:
  """A record's pair, encoded as tokenized._tokenize_pairs encodes it: data.prefix + the input, the target."""
  inputs, targets = datasets.pair(record, data_config)
  pair = (np.asarray(tokenizer.encode(data_config.prefix + tasks.model_input(inputs, data_config)), np.int32),
          np.asarray(tokenizer.encode(targets), np.int32))
  example, truncated = _seq2seq_counted(pair, data_config=data_config, tokenizer=tokenizer)
  return _record_counted([rows.with_counts(example, documents=1, truncated=truncated)],
                         [data_config.prefix + inputs + targets], dropped=0)


def _record_span_examples(record: dict, *, rng: np.random.Generator, data_config, tokenizer) -> list[dict]:
  """The span-corruption chunks of a record's documents (tasks.span_chunks), corrupted in order with `rng`."""
  examples, chunk_len, dropped = [], tasks.span_chunk_len(data_config), 0
  texts = datasets.record_texts(record, data_config)
  for text in texts:
    chunks = tasks.span_chunks([np.asarray(tokenizer.encode(tasks.model_input(text, data_config)), np.int32)],
                               chunk_len)
    for i, chunk in enumerate(chunks):
      example, truncated = _span_counted(chunk, rng, data_config=data_config, tokenizer=tokenizer)
      examples.append(rows.with_counts(example, documents=int(i == len(chunks) - 1), truncated=truncated))
    dropped += not chunks
  return _record_counted(examples, texts, dropped)


class TrainIterator(grain.DatasetIterator):
  """grain's train iterator, whose state also records data.num_workers and data.shuffle; `stats` counts its split.

  grain's state layout depends on the number of worker processes, and its
  position means other rows in another order, so a state saved with another
  num_workers or shuffle cannot resume; set_state says so, naming both values.
  A grain DatasetIterator, so grain.checkpoint.CheckpointSave /
  CheckpointRestore handle it as any other. `stats` (stats.Stats) are the
  train split's token accounting, counted up front or, when streaming, from
  the batches drawn.
  """

  def __init__(self, parent: grain.DatasetIterator, num_workers: int, stats: stats_lib.Stats | None, *,
               eos_id: int = 1, examples: bool = False, shuffle: bool = True):
    super().__init__(parent)
    self._num_workers, self._shuffle = num_workers, shuffle
    self._stats, self._eos_id, self._examples = stats, eos_id, examples
    # Of the batches drawn, when streaming; `examples`: rows of examples that carry rows.COUNT_FEATURES.
    self._counts = dict.fromkeys(('batches', 'targets', 'documents', 'inputs', 'truncated', 'bytes', 'dropped'),
                                 0)

  @property
  def streaming(self) -> bool:
    return self._stats is None

  @property
  def stats(self) -> stats_lib.Stats:
    """The split's accounting counted up front; when streaming, that of the batches drawn so far (kept in the
    iterator state, so a resumed run counts on).

    Concat-and-chunk: a streamed document ends with the one EOS its framing adds, each worker's stream opens with
    a token that is only read, and the tokens of a partial last row, never drawn, are not counted; a row carries
    the bytes of the records read for it. The other modes: a document (or seq2seq pair) is counted with its last
    example, each example with the tokens its source lost (tasks.encoder_decoder_example's count; LM pieces lose
    none), inputs are the encoder tokens (the first token of each document for LM); a record's first example
    carries its bytes and its documents that gave no example (dropped), and a record without examples the next
    example (rows.Flatten). Streamed counts are this process's shard's (the whole split's when counted up front),
    and a finite pass loses those of the records after its last full row or example.
    """
    if not self.streaming:
      return self._stats
    c = self._counts
    inputs = c['inputs'] if self._examples else min(c['batches'], max(self._num_workers, 1))
    return stats_lib.Stats(examples=c['documents'], bytes=c['bytes'],
                           source_tokens=inputs + c['targets'] + c['truncated'], input_tokens=inputs,
                           target_tokens=c['targets'], truncated_tokens=c['truncated'], dropped_examples=c['dropped'])

  def __next__(self):
    batch = next(self._parent)
    if self.streaming:
      self._count(batch)
    return batch

  def _count(self, batch: dict[str, np.ndarray]) -> None:
    """Adds a streamed batch to the counts; its rows.COUNT_FEATURES are taken out of it."""
    counted = batch['decoder_loss_weights'] > 0
    self._counts['batches'] += 1
    self._counts['targets'] += int(counted.sum())
    self._counts['bytes'] += int(batch.pop('count_bytes').sum())
    if not self._examples:
      self._counts['documents'] += int((counted & (batch['decoder_target_tokens'] == self._eos_id)).sum())
      return
    documents, dropped = int(batch.pop('count_documents').sum()), int(batch.pop('count_dropped').sum())
    self._counts['documents'] += documents
    self._counts['dropped'] += dropped
    self._counts['truncated'] += int(batch.pop('count_truncated').sum())
    encoder = batch.get('encoder_segment_ids')
    self._counts['inputs'] += documents - dropped if encoder is None else int((encoder > 0).sum())

  def get_state(self) -> dict:
    return {'num_workers': self._num_workers, 'shuffle': self._shuffle, 'iterator': self._parent.get_state(),
            **({'counts': dict(self._counts)} if self.streaming else {})}

  def set_state(self, state: dict) -> None:
    if 'num_workers' not in state:  # saved before the count was recorded.
      self._parent.set_state(state)
      return
    saved = state['num_workers']
    if saved != self._num_workers:
      raise errors.InputError(
          f'The data iterator state was saved with data.num_workers={saved} '
          f'but this run has data.num_workers={self._num_workers}; grain '
          'cannot resume across worker counts: resume with '
          f'data.num_workers={saved}.')
    saved = state.get('shuffle', True)  # Saved before data.shuffle existed: shuffled.
    if saved != self._shuffle:
      raise errors.InputError(
          f'The data iterator state was saved with data.shuffle={saved} but this run has '
          f'data.shuffle={self._shuffle}; its position means other rows in the other order: resume with '
          f'data.shuffle={saved}.')
    self._parent.set_state(state['iterator'])
    if 'counts' in state:
      self._counts = {**dict.fromkeys(self._counts, 0), **state['counts']}  # A state saved before lacks some.


def make_eval_batches(data_config, tokenizer, split: str, *, batch_size: int):
  """One ordered pass over `split`; every target token weighs 1 exactly once.

  The last batch is filled up with padding rows (weight 0) rather than dropped.
  Rows are built as in training (data.task, data.pack), unshuffled; span
  corruption noise is seeded by a fixed _EVAL_SEED.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive; got {batch_size}.')
  tasks.check_task(data_config)
  ids = tokenized.tokenize_split(data_config, tokenizer, split)
  if data_config.task != 'lm' or data_config.pack:
    ds = _example_dataset(data_config, tokenizer, ids, split, seed=_EVAL_SEED,
                          shuffle=False, num_epochs=1)
    return iter(rows.pad_or_pack(ds, data_config, batch_size=batch_size,
                                 seed=_EVAL_SEED, finite=True))
  chunked = rows.ChunkedStream(_token_stream(ids, tokenizer),
                                data_config.seq_len, keep_partial=True)
  return _batches(chunked, batch_size, data_config.seq_len)


def _batches(chunked: rows.ChunkedStream, batch_size: int, seq_len: int):
  for start in range(0, len(chunked), batch_size):
    batch = [chunked[i] for i in range(start, min(start + batch_size, len(chunked)))]
    batch += [rows.padding_row(seq_len)] * (batch_size - len(batch))
    yield {name: np.stack([row[name] for row in batch]) for name in tasks.FEATURES}


def _sentinel_id(data_config, tokenizer):
  check(hasattr(tokenizer, 'sentinel_id'), 'data.tokenizer', data_config.tokenizer,
        f'gives a {type(tokenizer).__name__}, which has no sentinel ids (sentinel_id(i)) for '
        "data.task='span_corruption': use data.tokenizer='sentencepiece'")
  return tokenizer.sentinel_id


def _check_sentinels(data_config, tokenizer) -> None:
  """Fails here, not in a worker, when the longest chunk's spans need more sentinels than the tokenizer has."""
  _, max_spans = tasks.noise_counts(
      max(tasks.span_chunk_len(data_config), 2), data_config.noise_density,
      data_config.mean_noise_span_length)
  _sentinel_id(data_config, tokenizer)(max_spans - 1)


def _seq2seq_example(pair, *, data_config, tokenizer):
  return _seq2seq_counted(pair, data_config=data_config, tokenizer=tokenizer)[0]


def _seq2seq_counted(pair, *, data_config, tokenizer) -> tuple[dict[str, np.ndarray], int]:
  """(example, truncated token count) of a pair of input and target ids."""
  inputs, targets = pair
  return tasks.encoder_decoder_example(
      inputs, targets, eos_id=tokenizer.eos_id,
      max_input_len=tasks.seq2seq_input_len(data_config),
      max_target_len=data_config.max_target_len)


def _span_example(chunk, rng, *, data_config, tokenizer):
  return _span_counted(chunk, rng, data_config=data_config, tokenizer=tokenizer)[0]


def _span_counted(chunk, rng, *, data_config, tokenizer) -> tuple[dict[str, np.ndarray], int]:
  """(example, truncated token count) of a chunk corrupted with `rng`'s noise."""
  inputs, targets = tasks.span_corruption(
      chunk, noise_density=data_config.noise_density,
      mean_noise_span_length=data_config.mean_noise_span_length, rng=rng,
      sentinel_id=_sentinel_id(data_config, tokenizer))
  return tasks.encoder_decoder_example(
      inputs, targets, eos_id=tokenizer.eos_id,
      max_input_len=data_config.max_input_len,
      max_target_len=data_config.max_target_len)


def _token_stream(ids: tokenized.TokenizedSplit, tokenizer) -> np.ndarray:
  """The split's documents as one stream, each opened as the tokenizer's model expects and closed by eos: the
  pretokenized token file itself, where there is one."""
  if ids.stream is not None:
    return ids.stream
  return rows.token_stream(ids.documents, tokenizer.eos_id, tuple(tokenizers.document_start(tokenizer)))


def _units(data_config, ids: tokenized.TokenizedSplit, tokenizer):
  """The split's units before the task map: LM pieces, seq2seq pairs or span-corruption chunks (empty documents
  and pieces without a target are left out here and counted by stats.py). Pieces and chunks are read when asked
  for (rows.DocumentPieces), in the order tasks.lm_pieces / tasks.span_chunks list them."""
  if data_config.task == 'seq2seq':
    return ids.pairs
  lengths = stats_lib.document_lengths(ids)
  if data_config.task == 'lm':
    framing = len(tokenizers.document_start(tokenizer)) + 1
    return rows.DocumentPieces(_FramedDocuments(ids, tokenizer), lengths + framing, width=data_config.seq_len + 1,
                               stride=data_config.seq_len, overlap=1)
  chunk_len = tasks.span_chunk_len(data_config)
  return rows.DocumentPieces(_DocumentRange(ids.documents), lengths, width=chunk_len, stride=chunk_len, overlap=0)


class _DocumentRange:
  """read(d, start, stop): tokens [start, stop) of document d as stored."""

  def __init__(self, documents):
    self._documents = documents

  def __call__(self, d: int, start: int, stop: int) -> np.ndarray:
    return self._documents[d][start:stop]


class _FramedDocuments:
  """read(d, start, stop): tokens [start, stop) of document d framed as the LM reads it (document_start, the
  document, eos); a pretokenized split's file holds it framed, so that is one read."""

  def __init__(self, ids: tokenized.TokenizedSplit, tokenizer):
    self._ids, self._eos = ids, np.array([tokenizer.eos_id], np.int32)
    self._start = np.array(tokenizers.document_start(tokenizer), np.int32)

  def __call__(self, d: int, start: int, stop: int) -> np.ndarray:
    if isinstance(self._ids.documents, pretokenized.Documents):
      return self._ids.documents.framed(d, start, stop)
    doc, head = self._ids.documents[d], len(self._start)  # Only [start, stop) is copied, not the document.
    tail = self._eos if start <= head + len(doc) < stop else self._eos[:0]
    return np.concatenate([self._start[start:stop], doc[max(start - head, 0):max(stop - head, 0)], tail])


def _example_dataset(data_config, tokenizer, ids: tokenized.TokenizedSplit, split: str, *, seed: int,
                     shuffle: bool, num_epochs: int | None,
                     shard: tuple[int, int] = (0, 1)) -> grain.MapDataset:
  """Unpadded examples of `split` (tasks.py), this process's shard."""
  ds = grain.MapDataset.source(_units(data_config, ids, tokenizer))
  index, count = shard
  if len(ds) < count:
    raise errors.InputError(f'The {split} split has {len(ds)} examples, fewer than '
                     f'process_count = {count}.')
  ds = ds[index::count]
  if shuffle:
    ds = ds.shuffle(seed=seed)  # reseeded each epoch by repeat.
  ds = ds.repeat(num_epochs)
  bound = dict(data_config=data_config, tokenizer=tokenizer)
  if data_config.task == 'lm':
    return ds.map(tasks.lm_example)
  if data_config.task == 'seq2seq':
    return ds.map(functools.partial(_seq2seq_example, **bound))
  _check_sentinels(data_config, tokenizer)
  # After repeat: the noise of an example differs from epoch to epoch.
  # random_map keys its rng by the index in this process's shard, so the
  # process index is folded into the seed: processes get different noise.
  return ds.random_map(functools.partial(_span_example, **bound),
                       seed=_fold_in(seed, index))


def _fold_in(seed: int, index: int) -> int:
  """A seed for shard `index` of `seed`; independent of the other shards'."""
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])
