"""Input-pipeline speed: tokens/s of tokenize + pack + batch, next to the train step's consumption.

Run: .venv/bin/python bench/data.py [--num_workers=2] [--batches=300] [--modes=concat,pack]

For each mode (concat-and-chunk, first-fit packing) and train shape (experiments/shakespeare.py's default
shape and bench/train.py's medium shape), on the shakespeare dataset with the char tokenizer:
- startup: seconds from an empty cache to the first batch (tokenizing the split, starting workers);
- pipeline tok/s: rows x seq_len per second over --batches batches after the first, read as train.py reads
  them (all positions of a row count, as the train step's rate does);
- train tok/s: the real train step's rate at that shape (bf16, the model of that experiment), timed in this
  same process by bench/train.py's `time_train_step`, so both figures see the same machine load;
- ratio = pipeline / train; the pipeline must keep it >= 10.
CPU figures: a busy core skews them; run alone when you can.
"""
import os
import sys
import time

from absl import app
from absl import flags
from absl import logging

# `.venv/bin/python bench/data.py` works as `./run.sh bench data` does: the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import train as train_bench  # noqa: E402
from experiments import shakespeare  # noqa: E402
from lm.data import pipeline  # noqa: E402
from lm.data import tokenized  # noqa: E402
from lm.data import tokenizer_cache  # noqa: E402

SHAPES = {  # name: (num_layers, num_heads, d_model, seq_len, batch_size) of the train step it must feed.
    'default': (4, 4, 256, 128, 32),  # experiments/shakespeare.py
    'medium': (6, 6, 384, 256, 16),  # bench/train.py's medium shape
}
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 2, 'grain worker processes (data.num_workers).')
_BATCHES = flags.DEFINE_integer('batches', 300, 'Timed batches per configuration (after the first).')
_MODES = flags.DEFINE_list('modes', ['concat', 'pack'], 'concat (data.pack=False) and/or pack (True).')
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 10, 'Timed train steps per shape (bfloat16).')


def time_pipeline(data_config, tokenizer, batch_size: int, num_batches: int) -> tuple[float, float]:
  """(seconds to the first batch from an empty token cache, tokens/s over the next num_batches)."""
  tokenized._DOCUMENTS.clear()  # Time tokenization too.
  start = time.perf_counter()
  iterator = pipeline.make_train_iterator(data_config, tokenizer, batch_size=batch_size, seed=0)
  next(iterator)
  startup = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(num_batches):
    batch = next(iterator)
  elapsed = time.perf_counter() - start
  if hasattr(iterator, 'close'):
    iterator.close()
  return startup, num_batches * batch['decoder_input_tokens'].size / elapsed


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # tfds logs every split it opens.
  config = shakespeare.get_config().data
  config.num_workers = _NUM_WORKERS.value
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  train_rates = {}
  for shape, (layers, heads, width, seq_len, batch_size) in SHAPES.items():
    seconds, _ = train_bench.time_train_step(layers, heads, width, seq_len, batch_size, 'bfloat16',
                                             _TRAIN_STEPS.value)
    train_rates[shape] = seq_len * batch_size / seconds
  print(f'shakespeare, char tokenizer, {config.num_workers} workers, {_BATCHES.value} batches')
  print(f'{"mode":<8}{"shape":<9}{"L x B":>9}{"startup s":>11}{"pipeline tok/s":>16}{"train tok/s":>13}'
        f'{"ratio":>8}')
  for mode in _MODES.value:
    config.pack = {'concat': False, 'pack': True}[mode]
    for shape, (_, _, _, seq_len, batch_size) in SHAPES.items():
      config.seq_len = seq_len
      startup, rate = time_pipeline(config, tokenizer, batch_size, _BATCHES.value)
      ratio = rate / train_rates[shape]
      print(f'{mode:<8}{shape:<9}{f"{seq_len}x{batch_size}":>9}{startup:>11.2f}{rate:>16,.0f}'
            f'{train_rates[shape]:>13,.0f}{ratio:>7.0f}x{"" if ratio >= 10 else "  < 10x!"}', flush=True)


if __name__ == '__main__':
  app.run(main)
