"""Train-step speed: tokens/s and MFU for nanoGPT's CPU shape and a medium shape, in float32 and bfloat16.

Run: ./run.sh bench train [--steps=20] [--shapes=nano,medium] [--dtypes=float32,bfloat16]

MFU = model FLOPs/s (PaLM accounting, lm/flops.py) / the FLOP/s of a 4096^3 matmul of the matching kind timed
in this process: float32, or bf16 inputs accumulating in float32. Run alone: a busy core skews every figure.
"""
import functools
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

from experiments import base
from lm import flops as flops_lib
from lm import optim
from lm import train

SHAPES = {  # name: (num_layers, num_heads, d_model, seq_len, batch_size); vocab 65, dropout 0.
    'nano': (4, 4, 128, 64, 12),
    'medium': (6, 6, 384, 256, 16),
}
_STEPS = flags.DEFINE_integer('steps', 20, 'Timed steps per configuration (after 3 warmup steps).')
_SHAPES = flags.DEFINE_list('shapes', list(SHAPES), 'Shapes to time.')
_DTYPES = flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes to time.')


def time_train_step(num_layers, num_heads, d_model, seq_len, batch_size, dtype, steps):
  """Best-of-3 seconds per step of the real train_step (AdamW, clipping, donated state) on random tokens."""
  config = base.get_config()
  config.model.update(num_layers=num_layers, num_heads=num_heads, d_model=d_model, dtype=dtype, dropout=0.0)
  config.data.seq_len = seq_len
  model = train.build_model(config, vocab_size=65)
  tx = optim.make_optimizer(config.train)
  state = jax.jit(functools.partial(train.init_state, model, tx, seq_len=seq_len))(jax.random.PRNGKey(0))
  token_bytes = jnp.ones((65,), jnp.float32)
  step = jax.jit(functools.partial(train.train_step, model=model, tx=tx, token_bytes=token_bytes),
                 donate_argnums=0)
  rng = np.random.default_rng(0)
  tokens = rng.integers(0, 65, (batch_size, seq_len + 1)).astype(np.int32)
  batch = jax.device_put({
      'decoder_input_tokens': tokens[:, :-1], 'decoder_target_tokens': tokens[:, 1:],
      'decoder_loss_weights': np.ones((batch_size, seq_len), np.float32),
      'decoder_segment_ids': np.ones((batch_size, seq_len), np.int32),
      'decoder_positions': np.broadcast_to(np.arange(seq_len, dtype=np.int32), (batch_size, seq_len)).copy()})
  for _ in range(3):
    state, metrics = step(state, batch)
  jax.block_until_ready(state)
  best = float('inf')
  for _ in range(3):
    start = time.perf_counter()
    for _ in range(steps):
      state, metrics = step(state, batch)
    jax.block_until_ready((state, metrics))
    best = min(best, (time.perf_counter() - start) / steps)
  return best, model.config


def main(argv):
  del argv
  print(f'device: {jax.devices()[0].device_kind} x{jax.device_count()}, jax {jax.__version__}')
  peaks = {dtype: flops_lib.measured_matmul_flops(dtype) for dtype in _DTYPES.value}
  for dtype, peak in peaks.items():
    kind = 'float32' if dtype == 'float32' else 'bf16 inputs, float32 accumulation'
    print(f'peak ({kind}, 4096^3 matmul): {peak / 1e9:.0f} GFLOP/s')
  print(f'{"shape":8} {"dtype":9} {"ms/step":>9} {"tokens/s":>10} {"GFLOP/s":>8} {"MFU":>6}')
  for name in _SHAPES.value:
    layers, heads, width, seq_len, batch_size = SHAPES[name]
    for dtype in _DTYPES.value:
      seconds, config = time_train_step(layers, heads, width, seq_len, batch_size, dtype, _STEPS.value)
      tokens_per_s = batch_size * seq_len / seconds
      model_flops = tokens_per_s * flops_lib.flops_per_token(config, seq_len)
      print(f'{name:8} {dtype:9} {seconds * 1e3:9.1f} {tokens_per_s:10,.0f} {model_flops / 1e9:8.1f} '
            f'{model_flops / peaks[dtype]:6.1%}', flush=True)


if __name__ == '__main__':
  app.run(main)
