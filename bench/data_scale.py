"""The input pipeline at corpus scale: `./run.sh bench data --scale [--scale_gb=2] [--num_workers=2]`.

In a temporary directory, removed afterwards:
1. generates --scale_gb GB of jsonl text (random words of a fixed vocabulary, documents of 200-6000 bytes) in 8
   files, and converts it once (`data.name='local'`, lm/data/local.py), timed;
2. pretokenizes the train split with the byte tokenizer (`./run.sh pretokenize`'s code, --num_workers spawned
   processes), timed, tokens/s per worker;
3. starts the train iterator on the pretokenized split (concat-and-chunk at the default shape, 128 x 32, grain
   with --num_workers worker processes) and draws --scale_batches batches: the seconds to the first batch, the
   tokens/s, and the peak memory of the main process and its workers together (their proportional set sizes,
   sampled every 0.2 s), less what the main process held before (JAX, the timed train step);
4. sets those rates against the default shape's train step (timed here) and the ~350M decoder's on one H200.

5. the same for data.streaming (records tokenized inside grain's workers, no token file): tokens/s per worker and
   how many workers reach 10x the 350M H200 rate;
6. the byte tokenizer encodes far faster than a learned one, so it also trains the SentencePiece tokenizer a run
   would (data.tokenizer='sentencepiece', on its seeded sample of the split) and times one process encoding
   --spm_records records with it: tokens/s and bytes/s per worker, and the workers 10x the 350M H200 rate needs.

The targets (issue: data at pretraining scale): memory under 2 GB over 10k batches, start-up under 30 s after the
one-time conversion, pretokenized reading >= 10x the 350M H200 rate on 2 cores.
"""
import json
import math
import os
import shutil
import tempfile
import threading
import time

import numpy as np

from lm.data import datasets
from lm.data import pipeline
from lm.data import pretokenized
from lm.data import tokenized
from lm.data import tokenizer_cache

H200_350M_TOKENS_PER_S = 160_000
_FILES = 8


def write_corpus(root: str, gigabytes: float, seed: int = 0) -> int:
  """Bytes of jsonl written into root/part-NN.jsonl: documents of random words, one JSON object per line."""
  rng = np.random.default_rng(seed)
  words = np.array([''.join(rng.choice(list('abcdefghijklmnopqrstuvwxyz'), n)) for n in rng.integers(1, 10, 5000)])
  target, written = int(gigabytes * 1e9), 0
  for f in range(_FILES):
    with open(os.path.join(root, f'part-{f:02d}.jsonl'), 'w') as out:
      while written < target * (f + 1) / _FILES:
        lines = []
        for length in rng.integers(40, 1000, 2000):  # Words per document: ~200-6000 bytes.
          lines.append(json.dumps({'text': ' '.join(words[rng.integers(0, len(words), length)])}))
        chunk = '\n'.join(lines) + '\n'
        out.write(chunk)
        written += len(chunk)
  return written


def _pss_bytes(pid: int) -> int:
  """Proportional set size: resident memory with pages shared between processes (forked workers) split among
  them, so the sum over processes counts each page once."""
  try:
    with open(f'/proc/{pid}/smaps_rollup') as f:
      for line in f:
        if line.startswith('Pss:'):
          return int(line.split()[1]) * 1024
  except OSError:
    pass
  return 0


def _tree_pids(root: int) -> list[int]:
  """`root` and its descendants (grain's workers), from /proc."""
  children: dict[int, list[int]] = {}
  for name in os.listdir('/proc'):
    if name.isdigit():
      try:
        with open(f'/proc/{name}/stat') as f:
          parent = int(f.read().rsplit(')', 1)[1].split()[1])
      except (OSError, IndexError, ValueError):
        continue
      children.setdefault(parent, []).append(int(name))
  pids, todo = [], [root]
  while todo:
    pid = todo.pop()
    pids.append(pid)
    todo += children.get(pid, [])
  return pids


def time_pipeline(data_config, tokenizer, batch_size: int, num_batches: int) -> tuple[float, float]:
  """(seconds to the first batch from an empty token cache, tokens/s over the next num_batches): the train iterator
  as train.py reads it, closed after (its grain workers stopped, their shared memory freed)."""
  tokenized._DOCUMENTS.clear()  # Time tokenization too.
  start = time.perf_counter()
  iterator = pipeline.make_train_iterator(data_config, tokenizer, batch_size=batch_size, seed=0)
  batch = next(iterator)
  startup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(iterator)
  elapsed = time.perf_counter() - start
  if hasattr(iterator, 'close'):
    iterator.close()
  return startup, num_batches * batch['decoder_input_tokens'].size / elapsed


class PeakMemory:
  """The peak of this process's and its descendants' summed memory (PSS) in the `with` block, and `added`: that
  peak less this process's own at the start (what the pipeline adds to a process that already holds JAX)."""

  def __enter__(self):
    self.start = _pss_bytes(os.getpid())
    self.peak, self._stop = 0, threading.Event()
    self._thread = threading.Thread(target=self._sample, daemon=True)
    self._thread.start()
    return self

  def _sample(self):
    while not self._stop.is_set():
      self.peak = max(self.peak, sum(_pss_bytes(p) for p in _tree_pids(os.getpid())))
      self._stop.wait(0.2)

  def __exit__(self, *exc):
    self._stop.set()
    self._thread.join()
    self.added = self.peak - self.start

  def __str__(self) -> str:
    return f'{self.added / 2**30:.2f} GiB over the {self.start / 2**30:.2f} GiB the process held before'


def sentencepiece_rate(config, num_records: int) -> None:
  """Trains config's SentencePiece tokenizer as a run would and prints one process's encoding rate."""
  spm_config = config.copy_and_resolve_references()
  spm_config.tokenizer = 'sentencepiece'
  start = time.perf_counter()
  tokenizer = tokenizer_cache.get_tokenizer(spm_config, None)
  trained = time.perf_counter() - start
  texts = [text for record in datasets.read_records(datasets.load_split(spm_config, 'train'), range(num_records))
           for text in datasets.record_texts(record, spm_config)]
  start = time.perf_counter()
  tokens = sum(len(pretokenized.framed_document(text, spm_config, tokenizer)) for text in texts)
  seconds = time.perf_counter() - start
  size = sum(len(text.encode('utf-8')) for text in texts)
  print(f'sentencepiece ({spm_config.spm_model_type}, {tokenizer.vocab_size:,} pieces, trained on its sample in '
        f'{trained:.0f} s): {tokens / seconds:,.0f} tok/s ({size / seconds / 1e6:.1f} MB/s, {size / tokens:.2f} '
        f'bytes a token) in one process over {num_records:,} records; 10x the ~350M H200 rate needs '
        f'{math.ceil(10 * H200_350M_TOKENS_PER_S * seconds / tokens)} such workers', flush=True)


def run(base_config, tokenizer, *, gigabytes: float, num_workers: int, num_batches: int,
        train_tokens_per_s: float, spm_records: int = 20_000) -> None:
  with tempfile.TemporaryDirectory(prefix='lm_data_scale_') as root:
    start = time.perf_counter()
    size = write_corpus(root, gigabytes)
    print(f'corpus: {size / 1e9:.2f} GB of jsonl in {_FILES} files, written in {time.perf_counter() - start:.0f} s',
          flush=True)
    config = base_config.copy_and_resolve_references()
    config.update(name='local', path=os.path.join(root, '*.jsonl'), data_dir=os.path.join(root, 'data'),
                  tokenizer='byte', validation_fraction=0.001, num_workers=num_workers, pack=False, task='lm')
    start = time.perf_counter()
    records = len(datasets.load_split(config, 'train'))
    print(f'conversion to ArrayRecord (once): {time.perf_counter() - start:.0f} s, {records:,} train records',
          flush=True)
    start = time.perf_counter()
    with PeakMemory() as memory:
      mapped = pretokenized.pretokenize(config, tokenizer, 'train', num_workers=num_workers)
    seconds = time.perf_counter() - start
    tokens = mapped.manifest['tokens']
    print(f'pretokenize train: {tokens:,} tokens in {seconds:.0f} s with {num_workers} workers: '
          f'{tokens / seconds / num_workers:,.0f} tok/s per worker; peak memory {memory}',
          flush=True)
    with PeakMemory() as memory:
      startup, rate = time_pipeline(config, tokenizer, 32, num_batches)
    print(f'pretokenized reading, {num_workers} grain workers, {num_batches:,} batches of 32 x 128: first batch '
          f'after {startup:.1f} s (target < 30), {rate:,.0f} tok/s, peak memory (main process and workers, PSS) '
          f'{memory} (target < 2)', flush=True)
    print(f'  = {rate / train_tokens_per_s:.0f}x the default shape\'s train step ({train_tokens_per_s:,.0f} tok/s), '
          f'{rate / H200_350M_TOKENS_PER_S:.1f}x the ~350M decoder on one H200 ({H200_350M_TOKENS_PER_S:,} tok/s; '
          'target >= 10x)', flush=True)
    streamed = config.copy_and_resolve_references()
    streamed.streaming = True
    shutil.rmtree(os.path.join(root, 'data', 'pretokenized'))  # Else the streaming path reads the token file.
    with PeakMemory() as memory:
      startup, rate = time_pipeline(streamed, tokenizer, 32, num_batches)
    per_worker = rate / max(num_workers, 1)
    print(f'streaming (data.streaming, tokenized in {num_workers} grain workers), {num_batches:,} batches: first batch '
          f'after {startup:.1f} s, {rate:,.0f} tok/s ({per_worker:,.0f} per worker), peak memory {memory}', flush=True)
    print(f'  = {rate / train_tokens_per_s:.0f}x the default shape\'s train step; 10x the ~350M H200 rate needs '
          f'{math.ceil(10 * H200_350M_TOKENS_PER_S / per_worker)} such workers', flush=True)
    sentencepiece_rate(config, spm_records)
