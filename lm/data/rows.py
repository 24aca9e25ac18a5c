"""Rows: batch rows made of a split's tokens (no model, no tokenizer), by concat-and-chunk or from examples.

Concat-and-chunk (data.task 'lm', data.pack False; as nanoGPT): each document's
tokens plus eos are concatenated into one stream (`token_stream`), and row i is
the window `stream[i*L : i*L + L + 1]` with inputs `w[:-1]` and targets `w[1:]`
(`ChunkedStream`). Windows overlap by one token (stride L), so every stream
token after the first is a target exactly once; stride L+1 would never predict
the token that starts each row. Every row is one segment (segment ids 1,
positions 0..L-1).

    stream  = [a b c eos d e eos]        L = 3
    row 0   inputs [a b c]   targets [b c eos]
    row 1   inputs [eos d e] targets [d e eos]

Every other mode makes examples (tasks.py), and `pad_or_pack` batches them:
one per row, padded (`pad_example`), or first-fit packed several per row with
grain's FirstFitPackIterDataset (`from_packed`). This is not in tasks.py because
it imports grain, and lm/evaluate.py imports tasks.py without the data stack.

Streamed (data.streaming), records arrive one by one: `StreamChunks` cuts concat-and-chunk rows from their
tokens, `Flatten` emits each record's examples, and `with_counts` lets an example carry its accounting into its row.
"""

import functools
import math

import grain
import numpy as np

from lm import errors
from lm.data import tasks


def token_stream(documents: list[np.ndarray], eos_id: int, start: tuple[int, ...] = ()) -> np.ndarray:
  """int32 [n]: the documents, each after `start` (tokenizers.document_start) and followed by eos, concatenated."""
  eos, first = np.array([eos_id], dtype=np.int32), np.array(start, dtype=np.int32)
  parts = [part for doc in documents for part in (first, doc, eos)]
  return np.concatenate(parts or [np.zeros(0, np.int32)])


class DocumentPieces:
  """Random-access pieces of documents, document by document, without holding them: piece j of a document of n
  tokens is tokens[j * stride : j * stride + width], for j while j * stride < n - overlap (`tasks.lm_pieces`:
  width L + 1, stride L, overlap 1; `tasks.span_chunks`: width = stride = chunk length, overlap 0).

  `read(d, start, stop)` gives document d's tokens [start, stop) as that mode sees them (framed with eos for LM);
  `lengths[d]` is its length. Only the per-document piece counts are held, so a pretokenized split's pieces are
  read from its file when a worker asks for them.
  """

  def __init__(self, read, lengths: np.ndarray, *, width: int, stride: int, overlap: int):
    lengths = np.asarray(lengths, np.int64)
    counts = np.maximum(-(-(lengths - overlap) // stride), 0)
    self._read, self._width, self._stride = read, width, stride
    self._first = np.concatenate([[0], np.cumsum(counts)])

  def __len__(self) -> int:
    return int(self._first[-1])

  def __getitem__(self, index: int) -> np.ndarray:
    if not 0 <= index < len(self):
      raise IndexError(f'piece {index} outside [0, {len(self)})')
    document = int(np.searchsorted(self._first, index, side='right')) - 1
    start = (index - int(self._first[document])) * self._stride
    return np.asarray(self._read(document, start, start + self._width))


class ChunkedStream:
  """Random-access rows of L tokens cut from a token stream with stride L.

  With `keep_partial`, a last row shorter than L (or the only row of a stream
  too short for one) is padded with pad id 0 and zero weights, so the rows
  hold every target exactly once; without it, only full rows exist.
  """

  def __init__(self, tokens: np.ndarray, seq_len: int, *, keep_partial: bool):
    if seq_len < 1:
      raise ValueError(f'seq_len must be positive; got {seq_len}.')
    self._tokens = tokens
    self._seq_len = seq_len
    num_targets = max(len(tokens) - 1, 0)
    self._len = (max(1, math.ceil(num_targets / seq_len)) if keep_partial
                 else num_targets // seq_len)

  def __len__(self) -> int:
    return self._len

  def __getitem__(self, index: int) -> dict[str, np.ndarray]:
    if not 0 <= index < self._len:
      raise IndexError(f'Row {index} outside [0, {self._len}).')
    L = self._seq_len
    return window_row(self._tokens[index * L:index * L + L + 1], L)

  def full_rows(self, indices) -> dict[str, np.ndarray]:
    """The rows at `indices` (full ones: keep_partial=False) as one batch [len(indices), L], built at once: grain
    spends ~50 us on each element it reads, so a train batch is one element, not 32."""
    L, indices = self._seq_len, [int(i) for i in indices]
    full = self._len if len(self._tokens) - 1 >= self._len * L else self._len - 1  # keep_partial's last is not.
    if not indices or not 0 <= min(indices) <= max(indices) < full:
      raise IndexError(f'full_rows reads one or more full rows, of [0, {full}); asked for {indices}')
    windows = np.stack([np.asarray(self._tokens[i * L:i * L + L + 1], np.int32) for i in indices])
    batch = len(windows)
    return {'decoder_input_tokens': windows[:, :-1], 'decoder_target_tokens': windows[:, 1:],
            'decoder_loss_weights': np.ones((batch, L), np.float32),
            'decoder_segment_ids': np.ones((batch, L), np.int32),
            'decoder_positions': np.broadcast_to(np.arange(L, dtype=np.int32), (batch, L)).copy()}


def window_row(window: np.ndarray, L: int) -> dict[str, np.ndarray]:
  """The row of a window of at most L + 1 stream tokens: inputs window[:-1], targets window[1:], padded to L."""
  n = max(len(window) - 1, 0)  # real targets in this row, L unless last.
  row = padding_row(L)
  row['decoder_input_tokens'][:n] = window[:n]
  row['decoder_target_tokens'][:n] = window[1:n + 1]
  row['decoder_loss_weights'][:n] = 1
  row['decoder_segment_ids'][:n] = 1
  row['decoder_positions'][:n] = np.arange(n)
  return row


class StreamChunks(grain.IterDataset):
  """Concat-and-chunk rows cut as documents arrive: the rows ChunkedStream cuts from the whole stream (windows
  of L + 1 tokens, stride L), for a stream read element by element (a partial last window is dropped). The parent
  gives (tokens, UTF-8 bytes) per element (a group of records); a row carries the bytes of the elements read for it
  (count_bytes). The state is small, however many tokens are left over: the parent's state before the first element
  they come from, how many elements they span and where in the first they start; set_state reads those again."""

  def __init__(self, parent: grain.IterDataset, seq_len: int):
    super().__init__(parent)
    self._seq_len = seq_len

  def __iter__(self) -> grain.DatasetIterator:
    return _StreamChunksIterator(self._parent.__iter__(), self._seq_len)


class _StreamChunksIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator, seq_len: int):
    super().__init__(parent)
    self._seq_len, self._left = seq_len, np.zeros(0, np.int32)
    # (parent state before, token count) of each element `_left` holds tokens of, the first from `_offset` on.
    self._elements, self._offset = [], 0

  def _read(self) -> int:
    """Appends the parent's next element to `_left`; its bytes."""
    before = self._parent.get_state()
    tokens, size = next(self._parent)  # StopIteration of the parent ends the rows.
    tokens = np.asarray(tokens, np.int32)
    self._elements.append((before, len(tokens)))
    self._left = np.concatenate([self._left, tokens])
    return size

  def __next__(self) -> dict[str, np.ndarray]:
    L, size = self._seq_len, 0
    while len(self._left) < L + 1:
      size += self._read()
    window, self._left, self._offset = self._left[:L + 1], self._left[L:], self._offset + L
    while self._elements and self._offset >= self._elements[0][1]:
      self._offset -= self._elements.pop(0)[1]
    return {**window_row(window, L), 'count_bytes': np.array([size], np.int32)}

  def get_state(self) -> dict:
    start = self._elements[0][0] if self._elements else self._parent.get_state()
    return {'start': start, 'elements': len(self._elements), 'offset': self._offset}

  def set_state(self, state: dict) -> None:
    if 'start' not in state:  # {'parent', 'left'}: the tokens themselves, records read one by one (before 2026-12-02).
      raise errors.InputError('The data iterator state was saved by an older streaming pipeline (data.streaming), '
                              'which read records one by one; this one reads them in groups and cannot resume it: '
                              'restart the run in a new workdir, or resume it with the version that started it.')
    self._parent.set_state(state['start'])
    self._left, self._elements, self._offset = np.zeros(0, np.int32), [], state['offset']
    for _ in range(state['elements']):  # Their bytes were counted before the state was saved.
      self._read()
    self._left = self._left[self._offset:]


class Flatten(grain.IterDataset):
  """The items of each parent element, one by one: the examples of a streamed group of records.

  The state is small, whatever an element holds: the parent's state taken before the current element and how
  many of its items were emitted; set_state restores the parent, reads that element again and skips them. (grain's
  FlatMap transforms declare a max_fan_out, which a long document's units have none of.) An item of COUNT_FEATURES
  alone (`counts_only`: a record that gave no example) is not emitted but added to the next item's counts, so
  between items nothing is carried; such items at the very end of a finite stream go uncounted.
  """

  def __iter__(self) -> grain.DatasetIterator:
    return _FlattenIterator(self._parent.__iter__())


class _FlattenIterator(grain.DatasetIterator):

  def __init__(self, parent: grain.DatasetIterator):
    super().__init__(parent)
    self._before, self._items, self._emitted = parent.get_state(), (), 0

  def __next__(self):
    carried = None
    while True:
      while self._emitted >= len(self._items):  # StopIteration of the parent ends the items.
        self._before = self._parent.get_state()
        self._items, self._emitted = next(self._parent), 0
      item = self._items[self._emitted]
      self._emitted += 1
      if not (isinstance(item, dict) and item.keys() == set(COUNT_FEATURES)):
        return item if carried is None else add_counts(item, carried)
      carried = item if carried is None else add_counts(carried, item)

  def get_state(self) -> dict:
    return {'parent': self._before, 'emitted': self._emitted}

  def set_state(self, state: dict) -> None:
    self._parent.set_state(state['parent'])
    self._before, self._emitted = state['parent'], state['emitted']
    self._items = next(self._parent, ())  # The element being emitted, read again; none at the parent's end.


# Accounting that a streamed example carries into its row (with_counts, pad_or_pack(counts=True)), one value per
# example: 1 on the last example of a document (or seq2seq pair), the tokens its source lost to truncation, and on
# a record's first example the record's UTF-8 bytes and its documents that gave no example (also counted as
# documents). The train iterator takes them out of the batch (pipeline.TrainIterator).
COUNT_FEATURES = ('count_documents', 'count_truncated', 'count_bytes', 'count_dropped')


def with_counts(example: dict[str, np.ndarray], **counts: int) -> dict[str, np.ndarray]:
  """`example` carrying its COUNT_FEATURES: `counts` by their names without 'count_' (0 where not given)."""
  unknown = set(counts) - {name.removeprefix('count_') for name in COUNT_FEATURES}
  if unknown:
    raise ValueError(f'unknown counts {sorted(unknown)}; have {COUNT_FEATURES}')
  return {**example, **{name: np.array([counts.get(name.removeprefix('count_'), 0)], np.int32)
                        for name in COUNT_FEATURES}}


def counts_only(**counts: int) -> dict[str, np.ndarray]:
  """An item of COUNT_FEATURES alone, which Flatten adds to the next example's counts."""
  return with_counts({}, **counts)


def add_counts(example: dict[str, np.ndarray], counts: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """`example` with the COUNT_FEATURES of `counts` added to its own."""
  return {**example, **{name: example[name] + counts[name] for name in COUNT_FEATURES}}


def padding_row(seq_len: int) -> dict[str, np.ndarray]:
  """A row that contributes nothing: pad tokens, weight 0, segment id 0."""
  row = {name: np.zeros(seq_len, np.int32) for name in tasks.FEATURES}
  row['decoder_loss_weights'] = np.zeros(seq_len, np.float32)
  return row


def example_lengths(data_config, *, counts: bool = False) -> dict[str, int]:
  """Length of each example feature in a row, for data.task (what packing and padding fill); with `counts`, also
  the COUNT_FEATURES, one value per example: a row holds at most one example per decoder token."""
  lengths = tasks.row_lengths(data_config)
  decoder = {name: lengths.decoder for name in tasks.FEATURES[:3]}
  decoder.update({name: lengths.decoder for name in COUNT_FEATURES} if counts else {})
  if data_config.task == 'lm':
    return decoder
  return {'encoder_input_tokens': lengths.encoder, **decoder}


def pad_or_pack(ds: grain.MapDataset | grain.IterDataset, data_config, *, batch_size: int, seed: int,
                finite: bool, counts: bool = False) -> grain.IterDataset:
  """Batches of rows from a dataset of examples: first-fit packed (data.pack) or one example per padded row.

  A MapDataset is read ahead in threads; an IterDataset (streamed examples) as it comes. `finite` (one pass) keeps
  a short last batch, padded with zero-weight rows, and packs bins in order, as does data.shuffle=False. `counts`:
  the examples carry COUNT_FEATURES (with_counts), which their rows keep.
  """
  lengths = example_lengths(data_config, counts=counts)
  it = ds
  if isinstance(ds, grain.MapDataset):
    it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2, prefetch_buffer_size=8))
  if data_config.pack:
    # One bin per row of a batch: when an example fits no open bin, grain
    # emits the bins; more bins pack tighter but delay and reorder more.
    it = grain.experimental.FirstFitPackIterDataset(
        it, length_struct=lengths, num_packing_bins=batch_size, seed=seed,
        shuffle_bins=not finite and data_config.shuffle).map(from_packed)
  else:
    it = it.map(functools.partial(pad_example, lengths=lengths))
  it = it.batch(batch_size, drop_remainder=not finite)
  if finite:
    it = it.map(functools.partial(pad_batch, batch_size=batch_size))
  return it


def pad_batch(batch: dict[str, np.ndarray], *, batch_size: int):
  """Fills a short last batch up with zeros: segment id 0, weight 0."""
  missing = batch_size - len(next(iter(batch.values())))
  return {name: np.concatenate([value, np.zeros((missing, *value.shape[1:]),
                                                value.dtype)])
          for name, value in batch.items()}


def pad_example(example: dict[str, np.ndarray], lengths: dict[str, int]
                ) -> dict[str, np.ndarray]:
  """An unpacked row: one segment (id 1, positions 0..n-1) padded with 0."""
  row = {}
  for name, length in lengths.items():
    value = example[name]
    if len(value) > length:
      raise errors.InputError(f'{name} has {len(value)} tokens > row length {length}.')
    row[name] = np.zeros(length, value.dtype)
    row[name][:len(value)] = value
  for prefix, name in (('encoder', 'encoder_input_tokens'),
                       ('decoder', 'decoder_target_tokens')):
    if name in lengths:
      n = len(example[name])
      row[f'{prefix}_segment_ids'] = np.zeros(lengths[name], np.int32)
      row[f'{prefix}_segment_ids'][:n] = 1
      row[f'{prefix}_positions'] = np.zeros(lengths[name], np.int32)
      row[f'{prefix}_positions'][:n] = np.arange(n)
  return row


def from_packed(row: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
  """grain first-fit output (`<f>_segment_ids`, `<f>_positions` per feature f)
  -> the batch contract: segment ids and positions once per side."""
  out = {}
  for name, value in row.items():
    if not name.endswith(('_segment_ids', '_positions')):
      out[name] = value
  for prefix, name in (('encoder', 'encoder_input_tokens'),
                       ('decoder', 'decoder_target_tokens')):
    if name in row:
      out[f'{prefix}_segment_ids'] = row[f'{name}_segment_ids'].astype(
          np.int32)
      out[f'{prefix}_positions'] = row[f'{name}_positions'].astype(np.int32)
  return out
