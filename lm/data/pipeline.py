"""grain input pipeline: documents -> token stream -> fixed-shape LM batches.

Language modelling is "concatenate and chunk" (as nanoGPT): each document's
tokens plus eos are concatenated into one stream, and row i is the window
`stream[i*L : i*L + L + 1]` with inputs `w[:-1]` and targets `w[1:]`.
Windows overlap by one token (stride L), so every stream token after the first
is a target exactly once; stride L+1 would never predict the token that
starts each row.

    stream  = [a b c eos d e eos]        L = 3
    row 0   inputs [a b c]   targets [b c eos]
    row 1   inputs [eos d e] targets [d e eos]

Batches are dicts of numpy [B, L] arrays with T5X names (see FEATURES). Here
every row is one segment (segment ids 1, positions 0..L-1); packing, with
per-document segment ids and positions restarting after eos, will replace
`ChunkedStream` as the row source and keep the batch contract.
"""

import math
import os

import grain
import numpy as np

from lm import tokenizers
from lm.data import datasets

FEATURES = ('decoder_input_tokens', 'decoder_target_tokens',
            'decoder_loss_weights', 'decoder_segment_ids', 'decoder_positions')
_TOKENIZER_SUBDIR = 'tokenizer'

# (prepared dataset dir, split, tokenizer description) -> int32 [n] stream.
# Train and every eval reuse one stream per split within the process.
_STREAMS: dict[tuple[str, str, str], np.ndarray] = {}


def get_tokenizer(data_config, workdir: str | None = None):
  """The run's tokenizer: workdir/tokenizer if saved, else built from the data.

  A char vocabulary is built over all splits (as nanoGPT does), so held-out
  text never meets an unknown character.
  """
  directory = workdir and os.path.join(workdir, _TOKENIZER_SUBDIR)
  if directory and os.path.isdir(directory):
    tokenizer = tokenizers.load_tokenizer(directory)
    saved_kind = tokenizer.to_dict()['kind']
    if saved_kind != data_config.tokenizer:
      raise ValueError(
          f'{directory!r} holds a {saved_kind!r} tokenizer but '
          f'data.tokenizer is {data_config.tokenizer!r}; use a new workdir.')
    return tokenizer
  texts = [text for split in datasets.SPLITS
           for text in datasets.split_texts(data_config, split)]
  tokenizer = tokenizers.make_tokenizer(data_config.tokenizer, texts)
  if directory:
    tokenizer.save(directory)
  return tokenizer


def token_stream(data_config, tokenizer, split: str) -> np.ndarray:
  """int32 [n]: the split's documents, each followed by eos, concatenated."""
  key = (str(datasets.make_builder(data_config).data_path), split,
         repr(tokenizer.to_dict()))
  if key not in _STREAMS:
    eos = np.array([tokenizer.eos_id], dtype=np.int32)
    parts = []
    for text in datasets.split_texts(data_config, split):
      parts += [tokenizer.encode(text), eos]
    _STREAMS[key] = np.concatenate(parts or [np.zeros(0, np.int32)])
  return _STREAMS[key]


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
    window = self._tokens[index * L:index * L + L + 1]
    n = max(len(window) - 1, 0)  # real targets in this row, L unless last.
    row = padding_row(L)
    row['decoder_input_tokens'][:n] = window[:n]
    row['decoder_target_tokens'][:n] = window[1:n + 1]
    row['decoder_loss_weights'][:n] = 1
    row['decoder_segment_ids'][:n] = 1
    row['decoder_positions'][:n] = np.arange(n)
    return row


def padding_row(seq_len: int) -> dict[str, np.ndarray]:
  """A row that contributes nothing: pad tokens, weight 0, segment id 0."""
  row = {name: np.zeros(seq_len, np.int32) for name in FEATURES}
  row['decoder_loss_weights'] = np.zeros(seq_len, np.float32)
  return row


def make_train_iterator(data_config, tokenizer, *, batch_size: int, seed: int,
                        process_index: int = 0, process_count: int = 1):
  """Endless shuffled batches of this process's rows; a grain DatasetIterator.

  Process p owns rows p, p + P, p + 2P, ... of the split (P processes), and
  shuffles them afresh each epoch from `seed`. The iterator's
  `get_state()` / `set_state()` (or grain.checkpoint.CheckpointSave/Restore in
  orbax) resume at exactly the next batch.
  """
  if not 0 <= process_index < process_count:
    raise ValueError(f'process_index {process_index} outside '
                     f'[0, process_count={process_count}).')
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive; got {batch_size}.')
  tokens = token_stream(data_config, tokenizer, 'train')
  rows = ChunkedStream(tokens, data_config.seq_len, keep_partial=False)
  if len(rows) < process_count:
    raise ValueError(
        f'The train split has {len(tokens)} tokens: {len(rows)} rows of '
        f'seq_len + 1 = {data_config.seq_len + 1} tokens, fewer than '
        f'process_count = {process_count}. Use more text or a smaller seq_len.')
  ds = grain.MapDataset.source(rows)[process_index::process_count]
  # shuffle then repeat: grain reseeds the shuffle each epoch (seed + epoch).
  ds = ds.shuffle(seed=seed).repeat().batch(batch_size, drop_remainder=True)
  # A small read-ahead in threads overlaps batch assembly with the step.
  it = ds.to_iter_dataset(grain.ReadOptions(num_threads=2,
                                            prefetch_buffer_size=8))
  if data_config.num_workers > 0:
    it = it.mp_prefetch(
        grain.MultiprocessingOptions(num_workers=data_config.num_workers))
  return iter(it)


def make_eval_batches(data_config, tokenizer, split: str, *, batch_size: int):
  """One ordered pass over `split`; every target token weighs 1 exactly once.

  The last batch is filled up with padding rows (weight 0) rather than dropped.
  """
  if batch_size < 1:
    raise ValueError(f'batch_size must be positive; got {batch_size}.')
  rows = ChunkedStream(token_stream(data_config, tokenizer, split),
                       data_config.seq_len, keep_partial=True)
  return _batches(rows, batch_size, data_config.seq_len)


def _batches(rows: ChunkedStream, batch_size: int, seq_len: int):
  for start in range(0, len(rows), batch_size):
    batch = [rows[i] for i in range(start, min(start + batch_size, len(rows)))]
    batch += [padding_row(seq_len)] * (batch_size - len(batch))
    yield {name: np.stack([row[name] for row in batch]) for name in FEATURES}
