"""A split read and tokenized once: the ids that the iterators (pipeline.py) read and the token accounting
(stats.py) counts, so that counting reads and encodes nothing again.

Documents (data.task 'lm', 'span_corruption') are the split's texts as the model reads them (`model_texts`), or
views into the token stream `./run.sh pretokenize` wrote (lm/data/pretokenized.py), which is then read, not encoded;
seq2seq pairs are each record's data.prefix + input and its target. Ids carry no eos: the tasks add it. A split's
documents are cached per process, so the eval passes of a run tokenize them once; seq2seq pairs are encoded at each
call, once per pass.
"""

from collections.abc import Sequence
import json
import os
from typing import Any, NamedTuple

import numpy as np

from lm import tokenizers
from lm.data import datasets
from lm.data import pretokenized
from lm.data import tasks


class TokenizedSplit(NamedTuple):
  """A split's ids and size.

  documents: each document's ids (lm, span_corruption; else empty).
  pairs: (input ids, target ids) of each record (seq2seq; else empty), the input behind data.prefix.
  bytes: UTF-8 bytes of the split's texts as stored: the documents, or prefix + input + target per record.
  stream: a pretokenized split's token stream (lm/data/pretokenized.py), whose views the documents are; else None.
  """
  documents: Sequence[np.ndarray]
  pairs: list[tuple[np.ndarray, np.ndarray]]
  bytes: int
  stream: Any = None  # Pretokenized: the documents as one token stream on disk (pretokenized.TokenFile).


def model_texts(data_config, split: str) -> list[str]:
  """The documents of `split` as the model reads them (tasks.model_input: with
  data.split_identifiers, identifiers split into words)."""
  return [tasks.model_input(text, data_config)
          for text in datasets.split_texts(data_config, split)]


def tokenize_split(data_config, tokenizer, split: str) -> TokenizedSplit:
  """`split` read and encoded: seq2seq pairs for data.task 'seq2seq', documents for the other tasks."""
  if data_config.task == 'seq2seq':
    return _tokenize_pairs(data_config, tokenizer, split)
  return _tokenize_documents(data_config, tokenizer, split)


def _tokenize_pairs(data_config, tokenizer, split: str) -> TokenizedSplit:
  prefix, pairs, size = data_config.prefix, [], 0
  for inputs, targets in datasets.split_pairs(data_config, split):
    pairs.append((np.asarray(tokenizer.encode(prefix + tasks.model_input(inputs, data_config)), np.int32),
                  np.asarray(tokenizer.encode(targets), np.int32)))
    size += len((prefix + inputs + targets).encode('utf-8'))
  return TokenizedSplit(documents=[], pairs=pairs, bytes=size)


# pretokenized.content(...) as JSON (dataset, split, feature, tokenizer, split_identifiers) -> the split's documents.
_DOCUMENTS: dict[tuple[str, str, str, bool], TokenizedSplit] = {}


def _tokenize_documents(data_config, tokenizer, split: str) -> TokenizedSplit:
  key = json.dumps(pretokenized.content(data_config, tokenizer, split), sort_keys=True)
  if key not in _DOCUMENTS:
    found = pretokenized.load(data_config, tokenizer, split)
    if found is None and data_config.pretokenize:
      found = pretokenized.pretokenize(data_config, tokenizer, split, num_workers=len(os.sched_getaffinity(0)))
    if found is not None:  # Pretokenized (`./run.sh pretokenize`, data.pretokenize): read, not encoded.
      start_len = len(tokenizers.document_start(tokenizer))
      print(f'data: {split} split pretokenized in {found.directory}', flush=True)
      _DOCUMENTS[key] = TokenizedSplit(documents=pretokenized.Documents(found.stream, found.offsets, start_len),
                                       pairs=[], bytes=found.manifest['bytes'], stream=found.stream)
      return _DOCUMENTS[key]
    texts = datasets.split_texts(data_config, split)
    documents = [np.asarray(tokenizer.encode(tasks.model_input(text, data_config)), np.int32) for text in texts]
    _DOCUMENTS[key] = TokenizedSplit(documents=documents, pairs=[],
                                     bytes=sum(len(text.encode('utf-8')) for text in texts))
  return _DOCUMENTS[key]
