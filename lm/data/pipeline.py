"""grain iterators over a split's rows: the train iterator (shuffled, process-sharded, resumable) and eval
batches (one ordered pass).

Rows are built as lm/data/tasks.py says: concat-and-chunk rows (data.task 'lm', data.pack False) by random access
into the split's token stream; in every other mode (data.pack, data.task 'seq2seq' or 'span_corruption') each
unit (an LM piece, a seq2seq record, a span-corruption chunk) becomes an example, and examples are padded into rows
of their own or first-fit packed, the packer's state being part of the iterator's:

    units -> [process shard] -> shuffle -> repeat -> (task map)
          -> pack or pad -> batch -> [worker processes]

`split_stats` counts what a pass keeps, truncates and drops (lm/data/report.py prints it).
"""

import functools

import grain
import numpy as np

from lm.data import datasets
from lm.data import tasks

_EVAL_SEED = 0  # span corruption noise of eval passes and of split_stats.


def model_texts(data_config, split: str) -> list[str]:
  """The documents of `split` as the model reads them (tasks.model_input: with
  data.split_identifiers, identifiers split into words)."""
  return [tasks.model_input(text, data_config)
          for text in datasets.split_texts(data_config, split)]


def token_stream(data_config, tokenizer, split: str) -> np.ndarray:
  """int32 [n]: the split's documents, each followed by eos, concatenated."""
  return tasks.token_stream(document_tokens(data_config, tokenizer, split), tokenizer.eos_id)


def make_train_iterator(data_config, tokenizer, *, batch_size: int, seed: int,
                        process_index: int = 0, process_count: int = 1,
                        num_epochs: int | None = None):
  """Shuffled batches of this process's rows; a grain DatasetIterator.

  Process p owns rows (concat-and-chunk) or examples (every other mode)
  p, p + P, p + 2P, ... of the split (P processes), and shuffles them afresh
  each epoch from `seed`. The iterator's `get_state()` / `set_state()` (or
  grain.checkpoint.CheckpointSave/Restore in orbax) resume at exactly the next
  batch, packing state included, given the same data.num_workers (else
  set_state raises). Endless unless `num_epochs` is given (tests, benchmarks);
  then a short last batch is padded with zero-weight rows. In the example
  modes each of data.num_workers > 0 workers batches its own share, so each
  worker's last batch may be padded, not only the last one.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} outside '
                     f'[0, process_count={process_count}).')
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive; got {batch_size}.')
  tasks.check_task(data_config)
  if data_config.task != 'lm' or data_config.pack:
    ds = _example_dataset(data_config, tokenizer, 'train', seed=seed,
                          shuffle=True, num_epochs=num_epochs,
                          shard=(process_index, process_count))
    it = tasks.pad_or_pack(ds, data_config, batch_size=batch_size, seed=seed,
                       finite=num_epochs is not None)
    return _train_iterator(it, data_config.num_workers)
  tokens = token_stream(data_config, tokenizer, 'train')
  rows = tasks.ChunkedStream(tokens, data_config.seq_len, keep_partial=False)
  if len(rows) < process_count:
    raise ValueError(
        f'The train split has {len(tokens)} tokens: {len(rows)} rows of '
        f'seq_len + 1 = {data_config.seq_len + 1} tokens, fewer than '
        f'process_count = {process_count}. Use more text or a smaller seq_len.')
  ds = grain.MapDataset.source(rows)[process_index::process_count]
  # shuffle then repeat: grain reseeds the shuffle each epoch (seed + epoch).
  ds = ds.shuffle(seed=seed).repeat(num_epochs).batch(
      batch_size, drop_remainder=num_epochs is None)
  if num_epochs is not None:
    ds = ds.map(functools.partial(tasks.pad_batch, batch_size=batch_size))
  # A small read-ahead in threads overlaps batch assembly with the step.
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2,
                                            prefetch_buffer_size=8))
  return _train_iterator(it, data_config.num_workers)


def _train_iterator(it: grain.IterDataset, num_workers: int):
  if num_workers > 0:
    it = it.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  return TrainIterator(iter(it), num_workers)


class TrainIterator(grain.DatasetIterator):
  """grain's train iterator, whose state also records data.num_workers.

  grain's state layout depends on the number of worker processes, so a state
  saved with another num_workers cannot resume; set_state says so, naming
  both values. A grain DatasetIterator, so grain.checkpoint.CheckpointSave /
  CheckpointRestore handle it as any other.
  """

  def __init__(self, parent: grain.DatasetIterator, num_workers: int):
    super().__init__(parent)
    self._num_workers = num_workers

  def __next__(self):
    return next(self._parent)

  def get_state(self) -> dict:
    return {'num_workers': self._num_workers,
            'iterator': self._parent.get_state()}

  def set_state(self, state: dict) -> None:
    if 'num_workers' not in state:  # saved before the count was recorded.
      self._parent.set_state(state)
      return
    saved = state['num_workers']
    if saved != self._num_workers:
      raise ValueError(
          f'The data iterator state was saved with data.num_workers={saved} '
          f'but this run has data.num_workers={self._num_workers}; grain '
          'cannot resume across worker counts: resume with '
          f'data.num_workers={saved}.')
    self._parent.set_state(state['iterator'])


def make_eval_batches(data_config, tokenizer, split: str, *, batch_size: int):
  """One ordered pass over `split`; every target token weighs 1 exactly once.

  The last batch is filled up with padding rows (weight 0) rather than dropped.
  Rows are built as in training (data.task, data.pack), unshuffled; span
  corruption noise is seeded by a fixed _EVAL_SEED.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive; got {batch_size}.')
  tasks.check_task(data_config)
  if data_config.task != 'lm' or data_config.pack:
    ds = _example_dataset(data_config, tokenizer, split, seed=_EVAL_SEED,
                          shuffle=False, num_epochs=1)
    return iter(tasks.pad_or_pack(ds, data_config, batch_size=batch_size,
                              seed=_EVAL_SEED, finite=True))
  rows = tasks.ChunkedStream(token_stream(data_config, tokenizer, split),
                       data_config.seq_len, keep_partial=True)
  return _batches(rows, batch_size, data_config.seq_len)


def _batches(rows: tasks.ChunkedStream, batch_size: int, seq_len: int):
  for start in range(0, len(rows), batch_size):
    batch = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
    batch += [tasks.padding_row(seq_len)] * (batch_size - len(batch))
    yield {name: np.stack([row[name] for row in batch]) for name in tasks.FEATURES}


# (prepared dataset dir, split, tokenizer description) -> per-document ids.
_DOCUMENTS: dict[tuple[str, str, str, bool], list[np.ndarray]] = {}


def document_tokens(data_config, tokenizer, split: str) -> list[np.ndarray]:
  """int32 ids of each document of `split` (no eos), cached per process."""
  key = (str(datasets.make_builder(data_config).data_path), split,
         repr(tokenizer.to_dict()), bool(data_config.get('split_identifiers')))
  if key not in _DOCUMENTS:
    _DOCUMENTS[key] = [np.asarray(tokenizer.encode(text), np.int32)
                       for text in model_texts(data_config, split)]
  return _DOCUMENTS[key]


def _lm_pieces(data_config, tokenizer, split: str) -> list[np.ndarray]:
  eos = np.array([tokenizer.eos_id], np.int32)
  return [piece for doc in document_tokens(data_config, tokenizer, split)
          for piece in tasks.lm_pieces(np.concatenate([doc, eos]),
                                       data_config.seq_len)]


def _span_chunk_len(data_config) -> int:
  return tasks.span_corruption_lengths(
      data_config.max_input_len, data_config.max_target_len,
      data_config.noise_density, data_config.mean_noise_span_length)


def _span_chunks(data_config, tokenizer, split: str) -> list[np.ndarray]:
  """Each document cut into chunks whose corruption fits the row lengths."""
  n = _span_chunk_len(data_config)
  return [doc[start:start + n]
          for doc in document_tokens(data_config, tokenizer, split)
          for start in range(0, len(doc), n)]


def _sentinel_id(tokenizer):
  if not hasattr(tokenizer, 'sentinel_id'):
    raise ValueError(
        f'data.task=span_corruption needs a tokenizer with sentinel ids '
        f'(sentinel_id(i)); {type(tokenizer).__name__} has none. Use '
        "data.tokenizer='sentencepiece'.")
  return tokenizer.sentinel_id


def _seq2seq_example(record, *, data_config, tokenizer):
  inputs, targets = datasets.pair(record, data_config)
  return tasks.encoder_decoder_example(
      tokenizer.encode(data_config.prefix + tasks.model_input(inputs, data_config)),
      tokenizer.encode(targets), eos_id=tokenizer.eos_id,
      max_input_len=(data_config.get('example_input_len')
                     or data_config.max_input_len),
      max_target_len=data_config.max_target_len)


def _span_example(chunk, rng, *, data_config, tokenizer):
  inputs, targets = tasks.span_corruption(
      chunk, noise_density=data_config.noise_density,
      mean_noise_span_length=data_config.mean_noise_span_length, rng=rng,
      sentinel_id=_sentinel_id(tokenizer))
  return tasks.encoder_decoder_example(
      inputs, targets, eos_id=tokenizer.eos_id,
      max_input_len=data_config.max_input_len,
      max_target_len=data_config.max_target_len)


def _drop_count(example_and_count):
  return example_and_count[0]


def _source(data_config, tokenizer, split: str) -> grain.MapDataset:
  """The split's units before the task map: LM pieces, seq2seq records or
  span-corruption chunks (empty documents and pieces without a target are
  left out here and counted by split_stats)."""
  if data_config.task == 'lm':
    return grain.MapDataset.source(_lm_pieces(data_config, tokenizer, split))
  if data_config.task == 'seq2seq':
    return grain.MapDataset.source(datasets.load_split(data_config, split))
  return grain.MapDataset.source(_span_chunks(data_config, tokenizer, split))


def _example_dataset(data_config, tokenizer, split: str, *, seed: int,
                     shuffle: bool, num_epochs: int | None,
                     shard: tuple[int, int] = (0, 1),
                     with_counts: bool = False) -> grain.MapDataset:
  """Unpadded examples of `split` (tasks.py), this process's shard; with
  `with_counts`, encoder-decoder elements are (example, truncated tokens)."""
  ds = _source(data_config, tokenizer, split)
  index, count = shard
  if len(ds) < count:
    raise ValueError(f'The {split} split has {len(ds)} examples, fewer than '
                     f'process_count = {count}.')
  ds = ds[index::count]
  if shuffle:
    ds = ds.shuffle(seed=seed)  # reseeded each epoch by repeat.
  ds = ds.repeat(num_epochs)
  bound = dict(data_config=data_config, tokenizer=tokenizer)
  if data_config.task == 'span_corruption':
    # Fail here, not in a worker: the longest chunk's spans need sentinels.
    _, max_spans = tasks.noise_counts(
        max(_span_chunk_len(data_config), 2), data_config.noise_density,
        data_config.mean_noise_span_length)
    _sentinel_id(tokenizer)(max_spans - 1)
  if data_config.task == 'lm':
    return ds.map(tasks.lm_example)
  if data_config.task == 'seq2seq':
    ds = ds.map(functools.partial(_seq2seq_example, **bound))
  else:
    # After repeat: the noise of an example differs from epoch to epoch.
    # random_map keys its rng by the index in this process's shard, so the
    # process index is folded into the seed: processes get different noise.
    ds = ds.random_map(functools.partial(_span_example, **bound),
                       seed=_fold_in(seed, index))
  return ds if with_counts else ds.map(_drop_count)


def _fold_in(seed: int, index: int) -> int:
  """A seed for shard `index` of `seed`; independent of the other shards'."""
  return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def split_stats(data_config, tokenizer, split: str, *,
                train: bool | None = None) -> tasks.Stats:
  """What one pass over `split` keeps, truncates and drops (see tasks.Stats).

  `train` (default: split == 'train') selects the train rows, which for
  concat-and-chunk drop the partial last row; eval passes keep it. Counts
  every example in the main process: cheap for our datasets, slow for large
  catalogue ones. For span corruption they are those of the eval noise.
  Holds: input_tokens + target_tokens + truncated_tokens == source_tokens.
  """
  tasks.check_task(data_config)
  train = split == 'train' if train is None else train
  if data_config.task == 'seq2seq':
    return _seq2seq_stats(data_config, tokenizer, split)
  docs = document_tokens(data_config, tokenizer, split)
  texts_bytes = sum(len(t.encode('utf-8'))
                    for t in datasets.split_texts(data_config, split))
  stats = tasks.Stats(examples=len(docs), bytes=texts_bytes)
  if data_config.task == 'span_corruption':
    stats.dropped_examples = sum(len(doc) == 0 for doc in docs)
    for example, truncated in _example_dataset(
        data_config, tokenizer, split, seed=_EVAL_SEED, shuffle=False,
        num_epochs=1, with_counts=True):
      stats = stats + _example_stats(example, truncated)
    return stats
  lengths = [len(doc) + 1 for doc in docs]  # eos appended.
  stats.source_tokens = sum(lengths)
  if not data_config.pack:  # one stream: its first token is only read.
    targets = max(stats.source_tokens - 1, 0)
    if train:
      targets = targets // data_config.seq_len * data_config.seq_len
    stats.input_tokens = min(stats.source_tokens, 1)
    stats.target_tokens = targets
  else:  # per document: its first token is only read.
    kept = [n for n in lengths if n >= 2]
    stats.input_tokens = len(kept)
    stats.target_tokens = sum(kept) - len(kept)
    stats.dropped_examples = len(lengths) - len(kept)
  stats.truncated_tokens = (stats.source_tokens - stats.input_tokens
                            - stats.target_tokens)
  return stats


def _example_stats(example, truncated: int) -> tasks.Stats:
  inputs = len(example['encoder_input_tokens'])
  targets = len(example['decoder_target_tokens'])
  return tasks.Stats(examples=0, source_tokens=inputs + targets + truncated,
                     input_tokens=inputs, target_tokens=targets,
                     truncated_tokens=truncated)


def _seq2seq_stats(data_config, tokenizer, split: str) -> tasks.Stats:
  records = datasets.load_split(data_config, split)
  stats = tasks.Stats(examples=len(records))
  for i in range(len(records)):
    inputs, targets = datasets.pair(records[i], data_config)
    stats.bytes += len((data_config.prefix + inputs + targets).encode('utf-8'))
    stats = stats + _example_stats(*_seq2seq_example(
        records[i], data_config=data_config, tokenizer=tokenizer))
  return stats

