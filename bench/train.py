"""Train-step speed: tokens/s and MFU for nanoGPT's CPU shape and a medium shape, in float32 and bfloat16.

Run: ./run.sh bench train [--rounds=15] [--min_seconds=30] [--steps=N] [--shapes=nano,medium]
                          [--dtypes=float32,bfloat16]
     ./run.sh bench train --strategies     (single vs pmap vs mesh launcher overhead on one device)
     ./run.sh bench train --vs_torch [--to_loss=L]   (our real loop against nanoGPT's in PyTorch: bench/vs_torch.py)

MFU = model FLOPs/s (PaLM accounting, lm/flops.py) / the FLOP/s of lm/hardware.py's probe matmul (1024^3) of the
matching kind, timed in this process in turns with the step: float32, or bf16 inputs accumulating in float32.
"MFU vs f32 peak" divides by the float32 matmul's rate whatever the dtype. Run alone: a busy core skews every figure.
"""
import functools
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np
import vs_torch  # bench/, this script's folder.

from experiments import base
from lm import config as config_lib
from lm import flops as flops_lib
from lm import hardware
from lm import optim
from lm import parallel
from lm import rundir
from lm import step as step_lib

SHAPES = {  # name: (num_layers, num_heads, d_model, seq_len, batch_size); vocab 65, dropout 0.
    'nano': (4, 4, 128, 64, 12),
    'medium': (6, 6, 384, 256, 16),
}
_STEPS = flags.DEFINE_integer('steps', 0, 'Steps per timed window; 0: as many as fill about 0.3 s, at least 10.')
_ROUNDS = flags.DEFINE_integer('rounds', 15, 'Timed windows per configuration (at least); the best counts.')
_MIN_SECONDS = flags.DEFINE_float(
    'min_seconds', 30.0, 'Keep taking rounds until a configuration has been timed for this long: spells of '
    'contention on this shared host last tens of seconds (two processes in a row at 19 ms/step against 14).')
_WINDOW_SECONDS = 0.3  # Short windows, many rounds: the best window is likelier to miss the host's noisy spells.
_STRATEGIES = flags.DEFINE_bool('strategies', False, 'Instead: time single, pmap and mesh launchers on 1 device.')
_SHAPES = flags.DEFINE_list('shapes', list(SHAPES), 'Shapes to time.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes to time.')
_VS_TORCH = flags.DEFINE_bool('vs_torch', False, "Instead: this codebase's training loop against nanoGPT's in "
                              'PyTorch, same model and data, in turns (bench/vs_torch.py).')
_DTYPE = flags.DEFINE_string('dtype', config_lib.defaults().model.dtype, "--vs_torch and bench/loop.py: our "
                             "side's model.dtype (PyTorch's side is float32).")
_CORPUS = flags.DEFINE_string('corpus', '', "--vs_torch: a UTF-8 text file to train on; '': the Shakespeare "
                              'works (data.name=shakespeare) as one file.')
_TO_LOSS = flags.DEFINE_float('to_loss', 0.0, '--vs_torch: instead of speed, train the nano shape until this '
                              'validation loss (nats per token) and compare wall times.')
_MAX_SECONDS = flags.DEFINE_float('max_seconds', 900.0, '--to_loss: give up on a side after this many seconds.')
_MAX_STEPS = flags.DEFINE_integer('max_steps', 5000, "--to_loss: the schedule's length (nanoGPT's max_iters "
                                  'and lr_decay_iters); a side stops there at the latest.')


def make_step_window(num_layers, num_heads, d_model, seq_len, batch_size, dtype, steps):
  """(window, model config): `window()` runs `steps` real train steps (AdamW, clipping, donated state) on
  random tokens and returns seconds per step."""
  config = base.get_config()
  config.model.update(num_layers=num_layers, num_heads=num_heads, d_model=d_model, dtype=dtype, dropout=0.0)
  config.data.seq_len = seq_len
  model = rundir.build_model(config, vocab_size=65)
  tx = optim.make_optimizer(config.train)
  state = jax.jit(functools.partial(step_lib.init_state, model, tx, seq_len=seq_len))(jax.random.PRNGKey(0))
  token_bytes = jnp.ones((65,), jnp.float32)
  step = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=token_bytes),
                 donate_argnums=0)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 65, (batch_size, seq_len + 1)).astype(np.int32)
  batch = jax.device_put({
      'decoder_input_tokens': tokens[:, :-1], 'decoder_target_tokens': tokens[:, 1:],
      'decoder_loss_weights': np.ones((batch_size, seq_len), np.float32),
      'decoder_segment_ids': np.ones((batch_size, seq_len), np.int32),
      'decoder_positions': np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch_size, seq_len)).copy()})
  holder = {'state': state}

  def window():
    start = time.perf_counter()
    for _ in range(steps):
      holder['state'], metrics = step(holder['state'], batch)
    jax.block_until_ready((holder['state'], metrics))
    return (time.perf_counter() - start) / steps

  for _ in range(3):  # Compile and warm up.
    holder['state'], _ = step(holder['state'], batch)
  if not steps:  # As many steps as fill one window (`window` reads `steps` when called), at least 10: a
    # window of a few steps times dispatch latency that longer ones overlap with compute (measured: 21 vs 15 ms).
    steps = 5
    steps = max(10, round(_WINDOW_SECONDS / window()))
  return window, model.config


def make_launcher_window(strategy, num_layers, num_heads, d_model, seq_len, batch_size, dtype, steps):
  """`window()` runs `steps` steps through `parallel.Launcher` under `strategy` on one device."""
  config = base.get_config()
  config.model.update(num_layers=num_layers, num_heads=num_heads, d_model=d_model, dtype=dtype, dropout=0.0)
  config.data.seq_len = seq_len
  model = rundir.build_model(config, vocab_size=65)
  tx = optim.make_optimizer(config.train)
  token_bytes = jnp.ones((65,), jnp.float32)
  launcher = parallel.Launcher(
      strategy, (1, 1, 1), init_fn=functools.partial(step_lib.init_state, model, tx, seq_len=seq_len),
      boxed_init_fn=functools.partial(step_lib.init_state, model, tx, seq_len=seq_len, boxed=True),
      step_fn=functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=token_bytes),
      eval_fn=functools.partial(step_lib.eval_step, model=model, token_bytes=token_bytes))
  tokens = np.random.default_rng(0).integers(0, 65, (batch_size, seq_len + 1)).astype(np.int32)
  batch = launcher.place_batch({
      'decoder_input_tokens': tokens[:, :-1], 'decoder_target_tokens': tokens[:, 1:],
      'decoder_loss_weights': np.ones((batch_size, seq_len), np.float32),
      'decoder_segment_ids': np.ones((batch_size, seq_len), np.int32),
      'decoder_positions': np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch_size, seq_len)).copy()})
  holder = {'state': launcher.init(jax.random.PRNGKey(0))}

  def window():
    start = time.perf_counter()
    for _ in range(steps):
      holder['state'], metrics = launcher.step_placed(holder['state'], batch)  # Batch placed once, outside.
    jax.block_until_ready((holder['state'], metrics))
    return (time.perf_counter() - start) / steps

  window()  # Compile and warm up.
  return window


def compare_strategies():
  """Per-step time of each launcher on one device, relative to 'single' (taken in turns, best of rounds)."""
  steps = _STEPS.value or 20
  print(f'launcher overhead on 1 device (nano shape, bfloat16; best of {_ROUNDS.value} windows of '
        f'{steps} steps, in turns)')
  windows = [make_launcher_window(s, *SHAPES['nano'], 'bfloat16', steps) for s in parallel.STRATEGIES]
  best = best_interleaved(windows, _ROUNDS.value)
  for strategy, seconds in zip(parallel.STRATEGIES, best):
    print(f'{strategy:8} {seconds * 1e3:7.2f} ms/step  {seconds / best[0] - 1:+6.1%} vs single', flush=True)


def make_matmul_window(dtype):
  """`window()` times lm/hardware.py's probe matmul of the kind `dtype` names, the peak MFU divides by."""
  return hardware.matmul_timer(dtype), 2 * hardware.PROBE_SIZE**3


def best_interleaved(windows, rounds, min_seconds=0.0):
  """Best time of each window over `rounds` or more, taking turns, so a noisy spell hits all of them alike; rounds
  go on until `min_seconds` have passed."""
  best = [float('inf')] * len(windows)
  start, done = time.perf_counter(), 0
  while done < rounds or time.perf_counter() - start < min_seconds:
    for i, window in enumerate(windows):
      best[i] = min(best[i], window())
    done += 1
  return best


def time_train_step(num_layers, num_heads, d_model, seq_len, batch_size, dtype, steps, rounds=3):
  """Best seconds per step over `rounds` windows of `steps` steps."""
  window, config = make_step_window(num_layers, num_heads, d_model, seq_len, batch_size, dtype, steps)
  return best_interleaved([window], rounds)[0], config


def main(argv):
  del argv
  if _VS_TORCH.value:
    return vs_torch.main(SHAPES, _SHAPES.value, steps=_STEPS.value,
                         rounds=_ROUNDS.value if flags.FLAGS['rounds'].present else 0, dtype=_DTYPE.value,
                         corpus=_CORPUS.value, target_loss=_TO_LOSS.value, max_seconds=_MAX_SECONDS.value,
                         max_steps=_MAX_STEPS.value)
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}')
  if _STRATEGIES.value:
    return compare_strategies()
  window = f'{_STEPS.value} steps' if _STEPS.value else f'about {_WINDOW_SECONDS} s'
  print(f'each figure is the best of at least {_ROUNDS.value} windows of {window} over at least '
        f'{_MIN_SECONDS.value:.0f} s, taken in turns with a {hardware.PROBE_SIZE}^3 matmul of the same kind, whose '
        f'best time is the peak the MFU divides by; model.dtype=auto is {hardware.resolve_dtype("auto")} here')
  print(f'{"shape":8} {"dtype":9} {"ms/step":>9} {"tokens/s":>10} {"GFLOP/s":>8} {"peak":>6} {"MFU":>6} '
        f'{"MFU vs f32 peak":>16}')
  for name in _SHAPES.value:
    layers, heads, width, seq_len, batch_size = SHAPES[name]
    for dtype in _DTYPES.value:
      step_window, config = make_step_window(layers, heads, width, seq_len, batch_size, dtype, _STEPS.value)
      f32_window, flops = make_matmul_window('float32')
      own_window, _ = make_matmul_window(dtype)
      seconds, f32_s, own_s = best_interleaved([step_window, f32_window, own_window], _ROUNDS.value,
                                               _MIN_SECONDS.value)
      tokens_per_s = batch_size * seq_len / seconds
      model_flops = tokens_per_s * flops_lib.flops_per_token(config, seq_len)
      print(f'{name:8} {dtype:9} {seconds * 1e3:9.1f} {tokens_per_s:10,.0f} {model_flops / 1e9:8.1f} '
            f'{flops / own_s / 1e9:6.0f} {model_flops * own_s / flops:6.1%} {model_flops * f32_s / flops:16.1%}',
            flush=True)


if __name__ == '__main__':
  app.run(main)
