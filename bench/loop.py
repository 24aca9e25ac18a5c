"""The real training loop against the bare train step, in turns in one process: is the loop as fast as the bench?

Run: ./run.sh bench loop [--shapes=nano,medium] [--dtype=auto] [--rounds=15]

- Loop: `lm.train.train_and_evaluate` of experiments/shakespeare.py at bench/train.py's shape (its data, grain
  pipeline, mesh launcher, one-step-behind NaN check, metrics.jsonl, tensorboard, final checkpoint), in a
  temporary workdir. It logs every K steps; its tokens/s is the median of metrics.jsonl's train rows after the
  first (the loop's own figure: training time with data waits, without compile, eval or checkpoints).
- Step: bench/train.py's bare step (the same model, optimizer and dtype, jitted with donation, one fixed batch
  already on the device, no data, no metric reads), timed K steps at a time; the median of its windows.
- In turns: the loop validates every K steps (on one batch), and its eval hook, whose time the loop counts as
  eval time and leaves out of its speed, times one window of the bare step. So each logged window of the loop
  is followed by one of the step, and a noisy spell on the host hits both.
The issue's target: loop / step >= 0.90 at both shapes.
"""
import os
import statistics
import sys
import tempfile

from absl import app
from absl import logging
import jax

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from bench import train as train_bench  # noqa: E402
from experiments import shakespeare  # noqa: E402
from lm import hardware  # noqa: E402
from lm import rundir  # noqa: E402
from lm import train  # noqa: E402

WINDOW_STEPS = {'nano': 50, 'medium': 4}  # About 1-3 s of steps on the development CPU.
_SHAPES, _ROUNDS, _DTYPE = train_bench._SHAPES, train_bench._ROUNDS, train_bench._DTYPE  # Its flags.


def loop_against_step(shape: str, dtype: str, rounds: int) -> tuple[float, float]:
  """(the loop's median tokens/s, the bare step's), `rounds` + 1 windows of each taken in turns."""
  layers, heads, width, seq_len, batch_size = train_bench.SHAPES[shape]
  k = WINDOW_STEPS.get(shape, 10)
  step_window, _ = train_bench.make_step_window(layers, heads, width, seq_len, batch_size, dtype, k)
  step_seconds = []
  config = shakespeare.get_config()
  config.model.update(num_layers=layers, num_heads=heads, d_model=width, dtype=dtype, dropout=0.0)
  config.data.seq_len = seq_len
  config.train.update(batch_size=batch_size, num_steps=k * (rounds + 1), time_budget_s=0.0, log_every=k,
                      eval_every=k, eval_batches=1, checkpoint_every=10**9)
  config.decode.sample_num_tokens = 0
  with tempfile.TemporaryDirectory() as workdir:
    train.train_and_evaluate(config, workdir, eval_hook=lambda run, step, params: step_seconds.append(step_window()))
    rows = rundir.read_metrics(workdir, 'train')
  loop = statistics.median(row['tokens_per_s'] for row in rows[1:])
  step = statistics.median(batch_size * seq_len / s for s in step_seconds[1:])
  return loop, step


def main(argv):
  del argv
  logging.set_verbosity(logging.ERROR)
  dtype = hardware.resolve_dtype(_DTYPE.value)
  print(f'device: {hardware.device_name()} x{jax.device_count()}, jax {jax.__version__}; model.dtype={_DTYPE.value}'
        f' -> {dtype}')
  results = []
  for shape in _SHAPES.value:
    loop, step = loop_against_step(shape, dtype, _ROUNDS.value)
    results.append((shape, loop, step))
  print(f'{"shape":8} {"dtype":9} {"loop tok/s":>11} {"step tok/s":>11} {"loop/step":>10}  (median of '
        f'{_ROUNDS.value} windows each, in turns)')
  for shape, loop, step in results:
    print(f'{shape:8} {dtype:9} {loop:11,.0f} {step:11,.0f} {loop / step:10.3f}')


if __name__ == '__main__':
  app.run(main)
