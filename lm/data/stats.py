"""Token accounting: what one pass over a split keeps, truncates and drops, counted from the split's ids.

`count` reads only a tokenized.TokenizedSplit (token counts, no texts), so the train iterator counts the ids it
reads (pipeline.TrainIterator.stats: what training prints and logs) without reading or encoding the corpus again.
`split_stats` counts any split (lm/data/report.py prints them).
"""

import dataclasses

import numpy as np

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
  return count(data_config, tokenized.tokenize_split(data_config, tokenizer, split), train=train)


def count(data_config, ids: tokenized.TokenizedSplit, *, train: bool) -> Stats:
  """Stats of the rows that data.task / data.pack make of `ids` (train rows if `train`), from lengths alone.

  Span corruption's counts are those of any noise: its lengths do not depend on the mask (tasks.corrupted_lengths).
  Holds: input_tokens + target_tokens + truncated_tokens == source_tokens.
  """
  tasks.check_task(data_config)
  if data_config.task == 'seq2seq':
    inputs = [len(inputs) + 1 for inputs, _ in ids.pairs]  # eos appended to both.
    targets = [len(targets) + 1 for _, targets in ids.pairs]
    return Stats(examples=len(ids.pairs), bytes=ids.bytes) + _encoder_decoder_stats(
        inputs, targets, tasks.seq2seq_input_len(data_config), data_config.max_target_len)
  stats = Stats(examples=len(ids.documents), bytes=ids.bytes)
  if data_config.task == 'span_corruption':
    return stats + _span_stats(data_config, ids)
  lengths = [int(n) + 1 for n in document_lengths(ids)]  # eos appended.
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


def document_lengths(ids: tokenized.TokenizedSplit) -> np.ndarray:
  """Each document's ids; a pretokenized split's from its offsets, without reading its tokens."""
  if isinstance(ids.documents, pretokenized.Documents):
    return ids.documents.lengths()
  return np.array([len(doc) for doc in ids.documents], np.int64)


def _span_stats(data_config, ids: tokenized.TokenizedSplit) -> Stats:
  """The chunks' token counts, from the document lengths (an empty document has no chunk: it is dropped). All
  chunks but a document's last are full (tasks.span_chunks)."""
  chunk_len = tasks.span_chunk_len(data_config)
  lengths = document_lengths(ids)
  corrupted = {}  # chunk length -> (inputs + eos, targets + eos).
  inputs, targets = [], []
  for n in lengths:
    full, rest = divmod(int(n), chunk_len)
    for length, count in ((chunk_len, full), (rest, 1 if rest else 0)):
      if count and length not in corrupted:
        corrupted[length] = tuple(k + 1 for k in tasks.corrupted_lengths(
            length, data_config.noise_density, data_config.mean_noise_span_length))
      inputs += [corrupted[length][0]] * count if count else []
      targets += [corrupted[length][1]] * count if count else []
  stats = _encoder_decoder_stats(inputs, targets, data_config.max_input_len, data_config.max_target_len)
  stats.dropped_examples = int(np.sum(lengths == 0))
  return stats


def _encoder_decoder_stats(inputs: list[int], targets: list[int], max_input_len: int,
                           max_target_len: int) -> Stats:
  """Counts of examples of `inputs` / `targets` tokens (eos included), cut to the rows' lengths as
  tasks.encoder_decoder_example cuts them."""
  inputs, targets = np.asarray(inputs, np.int64), np.asarray(targets, np.int64)
  kept_inputs, kept_targets = np.minimum(inputs, max_input_len), np.minimum(targets, max_target_len)
  return Stats(source_tokens=int(inputs.sum() + targets.sum()), input_tokens=int(kept_inputs.sum()),
               target_tokens=int(kept_targets.sum()),
               truncated_tokens=int(inputs.sum() - kept_inputs.sum() + targets.sum() - kept_targets.sum()))
