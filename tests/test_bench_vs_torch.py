"""bench/vs_torch.py's data: both sides read the same token ids, and a validation pass is a fixed number of rows.

No PyTorch here (it is the `bench` extra, not the `test` one): the PyTorch side's token files are checked against
our pipeline's rows, not run.
"""
import importlib.util
import os

import numpy as np

from lm.data import pipeline
from lm.data import tokenizer_cache

_PATH = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), 'bench', 'vs_torch.py')
spec = importlib.util.spec_from_file_location('bench_vs_torch', _PATH)
vs_torch = importlib.util.module_from_spec(spec)
spec.loader.exec_module(vs_torch)


def test_both_sides_read_the_same_ids_and_a_fixed_validation(tmp_path):
  text = ''.join(f'line {i}: to be or not to be, that is the question.\r\n' for i in range(200))
  seq_len, batch_size, val_rows = 16, 4, 6
  kept = vs_torch.write_corpus(text, str(tmp_path / 'corpus'), val_rows=val_rows, seq_len=seq_len)
  assert kept == val_rows
  shape = vs_torch.Shape('tiny', 1, 1, 8, seq_len, batch_size)
  config = vs_torch.loop_config(shape, 'float32', corpus_dir=str(tmp_path / 'corpus'),
                                data_dir=str(tmp_path / 'tfds'), num_steps=10, eval_every=5)
  vocab_size, train_bin, val_bin = vs_torch.write_token_files(config, str(tmp_path))
  tokenizer = tokenizer_cache.get_tokenizer(config.data)
  assert vocab_size == tokenizer.vocab_size
  # The PyTorch side's train stream is the train 90% (newlines as written) plus eos, in our ids.
  train_ids = np.fromfile(train_bin, np.uint16)
  cut = len(train_ids) - 1
  assert tokenizer.decode(train_ids[:-1]) == text[:cut] and train_ids[-1] == tokenizer.eos_id
  # Our validation pass: exactly val_rows full rows, the rows the PyTorch side evaluates.
  batches = list(pipeline.make_eval_batches(config.data, tokenizer, 'validation', batch_size=batch_size))
  weights = np.concatenate([b['decoder_loss_weights'] for b in batches])
  assert weights[:val_rows].all() and not weights[val_rows:].any()
  val = np.fromfile(val_bin, np.uint16)
  assert len(val) == val_rows * seq_len + 1
  inputs = np.concatenate([b['decoder_input_tokens'] for b in batches])[:val_rows]
  targets = np.concatenate([b['decoder_target_tokens'] for b in batches])[:val_rows]
  for i in range(val_rows):
    np.testing.assert_array_equal(inputs[i], val[i * seq_len:(i + 1) * seq_len])
    np.testing.assert_array_equal(targets[i], val[i * seq_len + 1:(i + 1) * seq_len + 1])
