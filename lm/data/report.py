"""`./run.sh data`: what the input pipeline makes of a dataset, in numbers (stats.py) and decoded rows."""

import itertools

import numpy as np

from lm.data import datasets
from lm.data import pipeline
from lm.data import stats


def describe(data_config, tokenizer, *, num_rows: int = 3,
             splits: tuple[str, ...] = datasets.SPLITS, full: bool = False) -> str:
  """A report of the data: per-split counts and `num_rows` decoded rows.

  The rows are the first train batch (seed 0); ' | ' separates the segments
  (packed examples) of a row. The train split's counts are those of that
  iterator's rows (as training logs them). A streamed dataset (data.streaming)
  is not read whole for them: its splits' records are counted, and their
  tokens only with `full`, in one pass over the records encoded in
  data.num_workers worker processes, which keeps token counts, not tokens.
  """
  rows = pipeline.make_train_iterator(data_config, tokenizer,
                                      batch_size=num_rows, seed=0)
  batch = next(rows)
  if hasattr(rows, 'close'):  # stops worker processes, if any.
    rows.close()
  lines = [f'data.name={data_config.name} task={data_config.task} '
           f'pack={data_config.pack} tokenizer={data_config.tokenizer} '
           f'(vocab {tokenizer.vocab_size})',
           f'{"split":<11}{"examples":>9}{"bytes":>12}{"tokens":>12}'
           f'{"bytes/token":>12}{"inputs":>10}{"targets":>12}'
           f'{"truncated":>10}{"dropped":>8}']
  for split in splits:
    if data_config.streaming and not full:
      records = len(datasets.load_split(data_config, split))
      lines.append(f'{split:<11}{records:>9,} records (data.streaming: tokens counted by a pass with --full)')
      continue
    if data_config.streaming:
      s = stats.streamed_split_stats(data_config, tokenizer, split, num_workers=data_config.num_workers)
    else:  # Counted as the pipeline tokenized the split.
      s = rows.stats if split == 'train' else stats.split_stats(data_config, tokenizer, split)
    per_token = s.bytes / s.source_tokens if s.source_tokens else 0.0
    lines.append(f'{split:<11}{s.examples:>9,}{s.bytes:>12,}'
                 f'{s.source_tokens:>12,}{per_token:>12.3f}'
                 f'{s.input_tokens:>10,}{s.target_tokens:>12,}'
                 f'{s.truncated_tokens:>10,}{s.dropped_examples:>8,}')
  lines.append('(tokens: before truncation, eos included; inputs: only read; '
               'truncated: in no row; train drops concat\'s partial row)')
  lines.append(f'first {num_rows} rows of a train batch '
               "(' | ' separates segments):")
  for b in range(num_rows):
    lines.append(f'row {b}')
    if 'encoder_input_tokens' in batch:
      lines.append('  inputs:  ' + _decode_segments(
          tokenizer, batch['encoder_input_tokens'][b],
          batch['encoder_segment_ids'][b]))
    else:
      lines.append('  inputs:  ' + _decode_segments(
          tokenizer, batch['decoder_input_tokens'][b],
          batch['decoder_segment_ids'][b]))
    lines.append('  targets: ' + _decode_segments(
        tokenizer, batch['decoder_target_tokens'][b],
        batch['decoder_segment_ids'][b]))
  return '\n'.join(lines)


def _decode_segments(tokenizer, tokens: np.ndarray,
                     segment_ids: np.ndarray) -> str:
  segments = [tokens[segment_ids == s] for s in np.unique(segment_ids)
              if s != 0]
  if not segments:
    return '(padding row)'
  return ' | '.join(repr(_decode(tokenizer, seg)) for seg in segments)


def _decode(tokenizer, ids: np.ndarray) -> str:
  """Decodes ids, showing sentinels (outside the char vocabulary) by id."""
  known = ids < tokenizer.vocab_size
  if known.all():
    return tokenizer.decode(ids)
  parts = []
  for is_known, group in itertools.groupby(zip(known, ids), key=lambda p: p[0]):
    group_ids = np.array([i for _, i in group])
    parts.append(tokenizer.decode(group_ids) if is_known
                 else ''.join(f'<{i}>' for i in group_ids))
  return ''.join(parts)
