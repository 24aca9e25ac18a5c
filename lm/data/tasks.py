"""Tasks: the batch contract, and pure numpy functions turning token ids into unpadded batch examples.

A batch is a dict of numpy [B, L] arrays with T5X names: FEATURES, and ENCODER_FEATURES for the
encoder-decoder tasks; `row_lengths` gives L of each side for data.task.

An *example* is a dict of 1-D arrays with the batch contract's names but no
segment ids or positions; rows.py either pads it into a row of its own
(segment id 1, positions 0..n-1) or first-fit packs several into a row, which
then adds per-segment ids (1, 2, ... ; 0 for padding) and positions
restarting at 0. (Concat-and-chunk LM rows need no examples: rows.py cuts
them from one token stream.)

Language modelling (packed). A document of n tokens (eos included) is cut
into pieces of at most L + 1 tokens with stride L (neighbours share one
token), and each piece gives inputs `p[:-1]`, targets `p[1:]`:

    doc = [a b c d e eos]           L = 3
    piece 0 [a b c d]   inputs [a b c]   targets [b c d]
    piece 1 [d e eos]   inputs [d e]     targets [e eos]

So every token of a document except its first is a target exactly once
(n - 1 targets), no target crosses a document, and nothing is truncated. A
document of one token (an empty text plus eos) has no target and is dropped
(and counted).

seq2seq / span corruption. `encoder_input_tokens` = inputs + eos and
`decoder_target_tokens` = targets + eos, each truncated to its length
(truncated tokens are counted); `decoder_input_tokens` is the targets shifted
right with 0 as the start token (T5), so packing restarts it per segment.
"""

import re
from typing import NamedTuple

import numpy as np

from lm.config import CHOICES
from lm.config import check

FEATURES = ('decoder_input_tokens', 'decoder_target_tokens',
            'decoder_loss_weights', 'decoder_segment_ids', 'decoder_positions')
ENCODER_FEATURES = ('encoder_input_tokens', 'encoder_segment_ids',
                    'encoder_positions')
TASKS = CHOICES['data.task']  # Declared in lm/config.py.


class RowLengths(NamedTuple):
  """Tokens per row of each side: decoder (the decoder-only LM's whole row), encoder (0 without one)."""
  decoder: int
  encoder: int


def check_task(data_config) -> None:
  check(data_config.task in TASKS, 'data.task', data_config.task, f'must be one of {TASKS}')


def row_lengths(data_config) -> RowLengths:
  """(data.seq_len, 0) for data.task 'lm'; (data.max_target_len, data.max_input_len) for the encoder-decoder
  tasks."""
  check_task(data_config)
  if data_config.task == 'lm':
    return RowLengths(decoder=data_config.seq_len, encoder=0)
  return RowLengths(decoder=data_config.max_target_len, encoder=data_config.max_input_len)


def features(data_config) -> tuple[str, ...]:
  """The batch's feature names for data.task."""
  check_task(data_config)
  return FEATURES + (ENCODER_FEATURES if data_config.task != 'lm' else ())


def seq2seq_input_len(data_config) -> int:
  """Tokens kept of each seq2seq input, eos included: data.example_input_len, 0 meaning data.max_input_len."""
  return data_config.example_input_len or data_config.max_input_len


def lm_pieces(tokens: np.ndarray, seq_len: int) -> list[np.ndarray]:
  """Pieces of at most seq_len + 1 tokens, stride seq_len; [] below 2 tokens."""
  if seq_len < 1:
    raise ValueError(f'seq_len must be positive; got {seq_len}.')
  return [tokens[start:start + seq_len + 1]
          for start in range(0, len(tokens) - 1, seq_len)]


def lm_example(piece: np.ndarray) -> dict[str, np.ndarray]:
  """One piece -> decoder inputs piece[:-1], targets piece[1:], weights 1."""
  piece = np.asarray(piece, np.int32)
  return {'decoder_input_tokens': piece[:-1],
          'decoder_target_tokens': piece[1:],
          'decoder_loss_weights': np.ones(len(piece) - 1, np.float32)}


def encoder_decoder_example(inputs: np.ndarray, targets: np.ndarray, *,
                            eos_id: int, max_input_len: int,
                            max_target_len: int
                            ) -> tuple[dict[str, np.ndarray], int]:
  """(example, truncated token count) for ids of one input and target.

  inputs + eos is cut to max_input_len and targets + eos to max_target_len;
  decoder inputs are the kept targets shifted right behind start token 0.
  """
  eos = np.array([eos_id], np.int32)
  full_inputs = np.concatenate([np.asarray(inputs, np.int32), eos])
  full_targets = np.concatenate([np.asarray(targets, np.int32), eos])
  enc, dec = full_inputs[:max_input_len], full_targets[:max_target_len]
  truncated = len(full_inputs) - len(enc) + len(full_targets) - len(dec)
  return {'encoder_input_tokens': enc,
          'decoder_input_tokens': np.concatenate([[0], dec[:-1]]).astype(
              np.int32),
          'decoder_target_tokens': dec,
          'decoder_loss_weights': np.ones(len(dec), np.float32)}, truncated


def noise_counts(length: int, noise_density: float,
                 mean_noise_span_length: float) -> tuple[int, int]:
  """(noise tokens, noise spans) of a mask over length >= 2 tokens.

  round(length * noise_density) noise tokens, at least 1 and at most
  length - 1, in round(noise / mean_noise_span_length) spans, at least 1;
  unlike T5, never more spans than either part has tokens.
  """
  num_noise = int(round(length * noise_density))
  num_noise = min(max(num_noise, 1), length - 1)
  num_spans = max(int(round(num_noise / mean_noise_span_length)), 1)
  return num_noise, min(num_spans, num_noise, length - num_noise)


def random_spans_noise_mask(length: int, noise_density: float,
                            mean_noise_span_length: float,
                            rng: np.random.Generator) -> np.ndarray:
  """bool [length]: T5's noise mask; spans alternate, starting with non-noise.

  noise_counts(max(length, 2), ...) gives the number of noise tokens and of
  spans, whose lengths, like the non-noise gaps between them, are a uniformly
  random composition. Deterministic given `rng`'s state.
  """
  original_length = length
  length = max(length, 2)
  num_noise, num_spans = noise_counts(length, noise_density,
                                      mean_noise_span_length)
  num_nonnoise = length - num_noise

  def segmentation(num_items: int) -> np.ndarray:
    """Random lengths >= 1 of num_spans segments summing to num_items."""
    first_in_segment = np.zeros(num_items, bool)
    cuts = rng.permutation(num_items - 1)[:num_spans - 1] + 1
    first_in_segment[cuts] = True
    first_in_segment[0] = True
    return np.diff(np.append(np.flatnonzero(first_in_segment), num_items))

  interleaved = np.stack([segmentation(num_nonnoise), segmentation(num_noise)],
                         axis=1).reshape(-1)
  span_index = np.repeat(np.arange(2 * num_spans), interleaved)
  return (span_index % 2 == 1)[:original_length]


def _spans_to_sentinels(tokens: np.ndarray, mask: np.ndarray,
                        sentinels: np.ndarray) -> np.ndarray:
  """tokens with the i-th run of masked tokens replaced by sentinels[i]."""
  starts = mask & ~np.concatenate([[False], mask[:-1]])
  span = np.cumsum(starts) - 1
  out = np.where(starts, sentinels[np.maximum(span, 0)], tokens)
  return out[~mask | starts].astype(np.int32)


def span_corruption(tokens: np.ndarray, *, noise_density: float,
                    mean_noise_span_length: float, rng: np.random.Generator,
                    sentinel_id) -> tuple[np.ndarray, np.ndarray]:
  """T5 span corruption of `tokens` (no eos) -> (inputs, targets), no eos.

  Noise span i becomes sentinel_id(i) in the inputs; the targets are, for
  each span, sentinel_id(i) then the span's tokens:

      tokens  [a b c d e f]   noise [c d] and [f]
      inputs  [a b S0 e S1]   targets [S0 c d S1 f]
  """
  tokens = np.asarray(tokens, np.int32)
  if not len(tokens):
    return tokens, tokens
  mask = random_spans_noise_mask(len(tokens), noise_density,
                                 mean_noise_span_length, rng)
  num_spans = int((mask & ~np.concatenate([[False], mask[:-1]])).sum())
  sentinels = np.array([sentinel_id(i) for i in range(max(num_spans, 1))],
                       np.int32)
  inputs = _spans_to_sentinels(tokens, mask, sentinels)
  # Non-noise run i precedes noise run i (the mask starts with non-noise), so
  # replacing it by sentinel i puts that sentinel right before span i.
  targets = _spans_to_sentinels(tokens, ~mask, sentinels)
  if len(targets) and not mask[-1]:
    targets = targets[:-1]  # a trailing non-noise run has no span after it.
  return inputs, targets


def corrupted_lengths(length: int, noise_density: float,
                      mean_noise_span_length: float) -> tuple[int, int]:
  """(inputs, targets) lengths, no eos, that span_corruption gives `length` tokens, whatever the noise.

  noise_counts fixes the noise tokens and spans of every mask; each span becomes one sentinel in the inputs and
  follows one in the targets. Below 2 tokens nothing is masked: the targets are empty.
  """
  if length < 2:
    return length, 0
  noise, spans = noise_counts(length, noise_density, mean_noise_span_length)
  return length - noise + spans, noise + spans


def span_chunk_len(data_config) -> int:
  """Tokens per span-corruption chunk: the longest whose corruption fits data.max_input_len / max_target_len."""
  return span_corruption_lengths(data_config.max_input_len, data_config.max_target_len,
                                 data_config.noise_density, data_config.mean_noise_span_length)


def span_chunks(documents: list[np.ndarray], chunk_len: int) -> list[np.ndarray]:
  """Each document cut into chunks of chunk_len tokens, the last one shorter; none of an empty document."""
  return [doc[start:start + chunk_len] for doc in documents for start in range(0, len(doc), chunk_len)]


def span_corruption_lengths(max_input_len: int, max_target_len: int,
                            noise_density: float,
                            mean_noise_span_length: float) -> int:
  """Longest token chunk whose corrupted inputs and targets (with eos) fit.

  T5's `random_spans_helper`, bounded by both lengths so that nothing is
  truncated by design: the counts are those of `noise_counts`, which the
  mask uses, so a chunk of this length always fits (1 if none longer does).
  """
  def lengths(n):  # inputs + eos, targets + eos.
    inputs, targets = corrupted_lengths(n, noise_density, mean_noise_span_length)
    return inputs + 1, targets + 1

  n = 1
  while all(a <= b for a, b in zip(lengths(n + 1),
                                   (max_input_len, max_target_len))):
    n += 1
  return n


# Identifier words: an acronym before a capitalised word ('HTTP' of 'HTTPServer'), a word with an optional
# capital, or a run of capitals or digits.
_IDENTIFIER = re.compile(r'\b_*[A-Za-z][A-Za-z0-9_]*')
_IDENTIFIER_WORD = re.compile(r'[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z0-9]+|[A-Z0-9]+')


def split_identifiers(text: str) -> str:
  """Code identifiers split into their words: 'def get_value(self)' -> 'def get value(self)', 'class
  HTTPServer' -> 'class HTTP Server', '__init__' -> 'init'; other text unchanged.

  Code summarization models read subtokens, not whole identifiers (code2seq; Ahmad et al. 2020): a summary
  says "Get the value", and the words of `get_value` then tokenize as the summary's words do, so the model
  can copy them.
  """
  return _IDENTIFIER.sub(lambda match: ' '.join(_IDENTIFIER_WORD.findall(match.group(0))), text)


def model_input(text: str, data_config) -> str:
  """The text a model reads for input or document `text`, before data.prefix: as it is, or with
  data.split_identifiers its identifiers split into words."""
  return split_identifiers(text) if data_config.split_identifiers else text
