"""Token accounting: what one pass over a split keeps, truncates and drops, counted from the split's ids.

`count` reads only a tokenized.TokenizedSplit (token counts, no texts), so the train iterator counts the ids it
reads (pipeline.TrainIterator.stats: what training prints and logs) without reading or encoding the corpus again.
`split_stats` counts any split (lm/data/report.py prints them); `streamed_split_stats` counts one too large to hold
tokenized, from the token counts of its records encoded in worker processes.
"""

import dataclasses

import grain
import numpy as np

from lm import tokenizers
from lm.data import datasets
from lm.data import pretokenized
from lm.data import tasks
from lm.data import tokenized


@dataclasses.dataclass
class Stats:
  """Token and example counts of one pass over a split, as the rows see it.

  source_tokens: tokens the task makes before truncation: documents + eos
    (lm); inputs + eos and targets + eos, prefix and sentinels included
    (seq2seq, span corruption). bytes: UTF-8 bytes of the texts.
  input_tokens: tokens the rows hold only as inputs: encoder inputs, or the
    first token of each LM sequence (no token before it to predict it from).
  target_tokens: tokens the rows hold as targets with loss weight 1.
  truncated_tokens: source tokens in no row (cut by max lengths, the partial
    last row of concat-and-chunk training, or of a dropped example).
  dropped_examples: examples that give no row (e.g. empty texts).
  So input_tokens + target_tokens + truncated_tokens == source_tokens.
  """
  examples: int = 0
  bytes: int = 0
  source_tokens: int = 0
  input_tokens: int = 0
  target_tokens: int = 0
  truncated_tokens: int = 0
  dropped_examples: int = 0

  def __add__(self, other: 'Stats') -> 'Stats':
    return Stats(*(a + b for a, b in zip(dataclasses.astuple(self),
                                         dataclasses.astuple(other))))


def split_stats(data_config, tokenizer, split: str, *,
                train: bool | None = None) -> Stats:
  """What one pass over `split` keeps, truncates and drops (see Stats).

  `train` (default: split == 'train') selects the train rows, which for
  concat-and-chunk drop the partial last row; eval passes keep it.
  """
  train = split == 'train' if train is None else train
  return count(data_config, tokenized.tokenize_split(data_config, tokenizer, split), train=train,
               start_len=len(tokenizers.document_start(tokenizer)))


def count(data_config, ids: tokenized.TokenizedSplit, *, train: bool, start_len: int = 0) -> Stats:
  """Stats of the rows that data.task / data.pack make of `ids` (train rows if `train`), from lengths alone;
  `start_len`: the tokens an LM document opens with (tokenizers.document_start)."""
  if data_config.task == 'seq2seq':
    lengths = np.array([(len(inputs), len(targets)) for inputs, targets in ids.pairs], np.int64).reshape(-1, 2)
  else:
    lengths = document_lengths(ids)
  return count_lengths(data_config, lengths, ids.bytes, train=train, start_len=start_len)


def count_lengths(data_config, lengths: np.ndarray, size: int, *, train: bool, start_len: int = 0) -> Stats:
  """Stats of the rows that data.task / data.pack make of a split whose documents have `lengths` ids each (lm,
  span corruption), or whose pairs have `lengths[i] = (input ids, target ids)` (seq2seq), eos not included, and
  whose texts have `size` UTF-8 bytes. An LM document is framed by `start_len` tokens before it (a bos) and eos.

  Span corruption's counts are those of any noise: its lengths do not depend on the mask (tasks.corrupted_lengths).
  Holds: input_tokens + target_tokens + truncated_tokens == source_tokens.
  """
  tasks.check_task(data_config)
  lengths = np.asarray(lengths, np.int64)
  if data_config.task == 'seq2seq':
    inputs, targets = lengths[:, 0] + 1, lengths[:, 1] + 1  # eos appended to both.
    return Stats(examples=len(lengths), bytes=size) + _encoder_decoder_stats(
        inputs, targets, tasks.seq2seq_input_len(data_config), data_config.max_target_len)
  stats = Stats(examples=len(lengths), bytes=size)
  if data_config.task == 'span_corruption':
    return stats + _span_stats(data_config, lengths)
  lengths = lengths + start_len + 1  # The framing: document_start, eos.
  stats.source_tokens = int(lengths.sum())
  if not data_config.pack:  # one stream: its first token is only read.
    targets = max(stats.source_tokens - 1, 0)
    if train:
      targets = targets // data_config.seq_len * data_config.seq_len
    stats.input_tokens = min(stats.source_tokens, 1)
    stats.target_tokens = targets
  else:  # per document: its first token is only read.
    kept = lengths[lengths >= 2]
    stats.input_tokens = len(kept)
    stats.target_tokens = int(kept.sum()) - len(kept)
    stats.dropped_examples = len(lengths) - len(kept)
  stats.truncated_tokens = (stats.source_tokens - stats.input_tokens
                            - stats.target_tokens)
  return stats


def document_lengths(ids: tokenized.TokenizedSplit) -> np.ndarray:
  """Each document's ids; a pretokenized split's from its offsets, without reading its tokens."""
  if isinstance(ids.documents, pretokenized.Documents):
    return ids.documents.lengths()
  return np.array([len(doc) for doc in ids.documents], np.int64)


def _span_stats(data_config, lengths: np.ndarray) -> Stats:
  """The chunks' token counts, from the document lengths (an empty document has no chunk: it is dropped). All
  chunks but a document's last are full (tasks.span_chunks)."""
  chunk_len = tasks.span_chunk_len(data_config)
  full, rest = np.divmod(lengths, chunk_len)
  chunks = np.concatenate([np.full(int(full.sum()), chunk_len), rest[rest > 0]])  # Every chunk's length.
  corrupted = np.zeros((chunk_len + 1, 2), np.int64)  # chunk length -> (inputs + eos, targets + eos).
  for n in np.unique(chunks):
    corrupted[n] = [k + 1 for k in tasks.corrupted_lengths(int(n), data_config.noise_density,
                                                           data_config.mean_noise_span_length)]
  inputs, targets = corrupted[chunks, 0], corrupted[chunks, 1]
  stats = _encoder_decoder_stats(inputs, targets, data_config.max_input_len, data_config.max_target_len)
  stats.dropped_examples = int(np.sum(lengths == 0))
  return stats


def _encoder_decoder_stats(inputs: np.ndarray, targets: np.ndarray, max_input_len: int,
                           max_target_len: int) -> Stats:
  """Counts of examples of `inputs` / `targets` tokens (eos included), cut to the rows' lengths as
  tasks.encoder_decoder_example cuts them."""
  inputs, targets = np.asarray(inputs, np.int64), np.asarray(targets, np.int64)
  kept_inputs, kept_targets = np.minimum(inputs, max_input_len), np.minimum(targets, max_target_len)
  return Stats(source_tokens=int(inputs.sum() + targets.sum()), input_tokens=int(kept_inputs.sum()),
               target_tokens=int(kept_targets.sum()),
               truncated_tokens=int(inputs.sum() - kept_inputs.sum() + targets.sum() - kept_targets.sum()))


def streamed_split_stats(data_config, tokenizer, split: str, *, num_workers: int = 0,
                         train: bool | None = None) -> Stats:
  """`split_stats` by one pass over the split's records by index, encoded in `num_workers` grain worker processes
  (0: here), keeping only each document's or pair's token count: 8 bytes a document, not its ids. For splits too
  large to hold tokenized (data.streaming; `./run.sh data --full`)."""
  train = split == 'train' if train is None else train
  source = datasets.load_split(data_config, split)
  records = grain.MapDataset.range(len(source)).batch(datasets.READ_GROUP).map(datasets.RecordsAt(source))
  records = records.map(_RecordLengths(data_config, tokenizer)).to_iter_dataset(
      grain.ReadOptions(num_threads=2, prefetch_buffer_size=8))
  if num_workers > 0:
    records = records.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
  lengths, size = [], 0
  for record_lengths, record_bytes in records:
    lengths.append(record_lengths)
    size += record_bytes
  width = (2,) if data_config.task == 'seq2seq' else ()
  return count_lengths(data_config, np.concatenate(lengths or [np.zeros((0, *width), np.int64)]), size, train=train,
                       start_len=len(tokenizers.document_start(tokenizer)))


class _RecordLengths:
  """records -> (token counts of their documents [n], or of their (input, target) pairs [n, 2]; their UTF-8
  bytes), encoded as tokenized.py encodes a split."""

  def __init__(self, data_config, tokenizer):
    self._config, self._tokenizer = data_config, tokenizer

  def __call__(self, records: list[dict]) -> tuple[np.ndarray, int]:
    config, encode = self._config, self._tokenizer.encode
    if config.task == 'seq2seq':
      pairs = [datasets.pair(record, config) for record in records]
      lengths = [(len(encode(config.prefix + tasks.model_input(inputs, config))), len(encode(targets)))
                 for inputs, targets in pairs]
      return (np.array(lengths, np.int64).reshape(-1, 2),
              sum(len((config.prefix + inputs + targets).encode('utf-8')) for inputs, targets in pairs))
    texts = [text for record in records for text in datasets.record_texts(record, config)]
    return (np.array([len(encode(tasks.model_input(text, config))) for text in texts], np.int64),
            sum(len(text.encode('utf-8')) for text in texts))
