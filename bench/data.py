"""Input-pipeline speed: tokens/s of tokenize + pack + batch, next to the train step's consumption.

Run: .venv/bin/python bench/data.py [--num_workers=2] [--batches=300] [--modes=concat,pack,pretokenized]
     .venv/bin/python bench/data.py --scale [--scale_gb=2] [--scale_batches=10000]   (bench/data_scale.py)

For each mode (concat-and-chunk, first-fit packing, and concat-and-chunk read from a pretokenized token file) and
train shape (experiments/shakespeare.py's default shape and bench/train.py's medium shape), on the shakespeare
dataset with the char tokenizer:
- startup: seconds from an empty cache to the first batch (tokenizing the split, starting workers);
- pipeline tok/s: rows x seq_len per second over --batches batches after the first, read as train.py reads
  them (all positions of a row count, as the train step's rate does);
- train tok/s: the real train step's rate at that shape (bf16, the model of that experiment), timed in this
  same process by bench/train.py's `time_train_step`, so both figures see the same machine load;
- ratio = pipeline / train; the pipeline must keep it >= 10. The pretokenized rows also print their rate
  against the ~350M decoder's on one H200 (the data issue's target: >= 10x on 2 cores).
CPU figures: a busy core skews them; run alone when you can.
"""
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
from absl import logging

# `.venv/bin/python bench/data.py` works as `./run.sh bench data` does: the repository root on the path.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import data_scale  # noqa: E402
from bench import train as train_bench  # noqa: E402
from experiments import shakespeare  # noqa: E402
from lm import tokenizers  # noqa: E402
from lm.data import pretokenized  # noqa: E402
from lm.data import tokenizer_cache  # noqa: E402

SHAPES = {  # name: (num_layers, num_heads, d_model, seq_len, batch_size) of the train step it must feed.
    'default': (4, 4, 256, 128, 32),  # experiments/shakespeare.py
    'medium': (6, 6, 384, 256, 16),  # bench/train.py's medium shape
}
_NUM_WORKERS = flags.DEFINE_integer('num_workers', 2, 'grain worker processes (data.num_workers).')
_BATCHES = flags.DEFINE_integer('batches', 300, 'Timed batches per configuration (after the first).')
_MODES = flags.DEFINE_list('modes', ['concat', 'pack', 'pretokenized'],
                           'concat (data.pack=False), pack (True), pretokenized (concat read from ./run.sh '
                           "pretokenize's token file, written first into a temporary data dir).")
_SCALE = flags.DEFINE_bool('scale', False, 'Instead: the pipeline on a generated corpus of --scale_gb GB '
                           '(bench/data_scale.py): conversion, pretokenization, memory and start-up.')
_SCALE_GB = flags.DEFINE_float('scale_gb', 2.0, '--scale: GB of jsonl text to generate.')
_SCALE_BATCHES = flags.DEFINE_integer('scale_batches', 10_000, '--scale: batches to draw from the pipeline.')
H200_350M_TOKENS_PER_S = data_scale.H200_350M_TOKENS_PER_S
_TRAIN_STEPS = flags.DEFINE_integer('train_steps', 10, 'Timed train steps per shape (bfloat16).')


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)  # tfds logs every split it opens.
  config = shakespeare.get_config().data
  config.num_workers = _NUM_WORKERS.value
  if _SCALE.value:
    layers, heads, width, seq_len, batch_size = SHAPES['default']
    seconds, _ = train_bench.time_train_step(layers, heads, width, seq_len, batch_size, 'bfloat16',
                                             _TRAIN_STEPS.value)
    data_scale.run(config, tokenizers.ByteTokenizer(), gigabytes=_SCALE_GB.value, num_workers=_NUM_WORKERS.value,
                   num_batches=_SCALE_BATCHES.value, train_tokens_per_s=seq_len * batch_size / seconds)
    return
  tokenizer = tokenizer_cache.get_tokenizer(config, None)
  train_rates = {}
  for shape, (layers, heads, width, seq_len, batch_size) in SHAPES.items():
    seconds, _ = train_bench.time_train_step(layers, heads, width, seq_len, batch_size, 'bfloat16',
                                             _TRAIN_STEPS.value)
    train_rates[shape] = seq_len * batch_size / seconds
  print(f'shakespeare, char tokenizer, {config.num_workers} workers, {_BATCHES.value} batches')
  print(f'{"mode":<13}{"shape":<9}{"L x B":>9}{"startup s":>11}{"pipeline tok/s":>16}{"train tok/s":>13}'
        f'{"ratio":>8}')
  rates = {}
  for mode in _MODES.value:
    with tempfile.TemporaryDirectory() as data_dir:
      mode_config = config.copy_and_resolve_references()
      mode_config.pack = mode == 'pack'
      if mode == 'pretokenized':  # Its own data dir: the shakespeare dataset prepared again there, in seconds.
        mode_config.data_dir = data_dir
        start = time.perf_counter()
        pretokenized.pretokenize(mode_config, tokenizer, 'train', num_workers=_NUM_WORKERS.value)
        print(f'pretokenize train: {time.perf_counter() - start:.2f} s (dataset preparation included)', flush=True)
      for shape, (_, _, _, seq_len, batch_size) in SHAPES.items():
        mode_config.seq_len = seq_len
        startup, rates[mode, shape] = data_scale.time_pipeline(mode_config, tokenizer, batch_size,
                                                                           _BATCHES.value)
        ratio = rates[mode, shape] / train_rates[shape]
        print(f'{mode:<13}{shape:<9}{f"{seq_len}x{batch_size}":>9}{startup:>11.2f}{rates[mode, shape]:>16,.0f}'
              f'{train_rates[shape]:>13,.0f}{ratio:>7.0f}x{"" if ratio >= 10 else "  < 10x!"}', flush=True)
  for (mode, shape), rate in rates.items():
    if mode == 'pretokenized':
      print(f'{mode} {shape}: {rate / H200_350M_TOKENS_PER_S:.1f}x the ~350M decoder on one H200 '
            f'({H200_350M_TOKENS_PER_S:,} tok/s), {rate / max(_NUM_WORKERS.value, 1):,.0f} tok/s per worker')


if __name__ == '__main__':
  app.run(main)
