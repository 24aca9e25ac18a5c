"""Train-step tokens/s and MFU of ~350M and ~1B decoder-only models in bfloat16 on one accelerator.

Run: ./run.sh bench accelerator [--models=350m,1b] [--seq_len=2048] [--steps=10] [--budget_s=480]
     ./run.sh bench accelerator --smoke      (tiny model, 2 steps: checks the driver on CPU)
bench/accelerator.sh runs it on an NVIDIA H200 with a timeout.

Each configuration (model, batch, remat) runs the real `step.train_step` (AdamW, clipping, donated state)
through `parallel.Launcher('single')` on random tokens (vocab 32768), with `model.attention='cudnn'`
(jax.nn.dot_product_attention's cuDNN flash attention; 'xla', its XLA implementation, off GPU) and bfloat16 matmuls
(params float32). It compiles, runs --warmup steps, then times --steps steps; one line per configuration,
the models taking turns (so a short --budget_s still reaches every model), then the best per model.
MFU = tokens/s * training FLOPs per token (PaLM accounting, lm/flops.py) / the device's dense bf16
peak (lm/flops.py PEAK_FLOPS: H100/H200 SXM 989 TFLOP/s; on CPU a timed 1024^3 bf16 matmul). A
configuration that runs out of memory prints OOM and the run goes on; configurations left when --budget_s
is spent are skipped.
"""
import functools
import gc
import os
import sys
import time

from absl import app
from absl import flags
import jax
import jax.numpy as jnp
import numpy as np

# `.venv/bin/python bench/accelerator.py` works as `./run.sh bench accelerator` does.
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from experiments import base  # noqa: E402
from lm import flops as flops_lib  # noqa: E402
from lm import hardware  # noqa: E402
from lm import optim  # noqa: E402
from lm import parallel  # noqa: E402
from lm import rundir  # noqa: E402
from lm import step as step_lib  # noqa: E402

MODELS = {  # name: (num_layers, d_model, num_heads); vocab 32768, GELU MLP 4x, learned positions, tied.
    '350m': (24, 1024, 16),  # 302M matmul params + 34M embedding.
    '1b': (20, 2048, 16),  # 1.01B matmul params (with the tied output) + 67M embedding.
    'smoke': (2, 64, 2),
}
# (batch rows, remat) tried per model; one that OOMs does not stop the others.
CHOICES = {
    # Best first, as measured on one H200 (README): a short --budget_s still times the best choice.
    '350m': [(32, 'none'), (16, 'none'), (64, 'save_matmuls'), (64, 'full')],
    '1b': [(16, 'none'), (8, 'none'), (32, 'save_matmuls'), (32, 'full')],
    'smoke': [(2, 'none'), (4, 'full')],
}
VOCAB = 32768

_MODELS = flags.DEFINE_list('models', ['350m', '1b'], f'Models to time, of {sorted(MODELS)}.')
_CHOICES = flags.DEFINE_list('choices', [], 'Override the (batch, remat) grid: e.g. 16:none,32:full.')
_SEQ = flags.DEFINE_integer('seq_len', 2048, 'Tokens per row.')
_STEPS = flags.DEFINE_integer('steps', 10, 'Timed steps per configuration.')
_WARMUP = flags.DEFINE_integer('warmup', 2, 'Untimed steps (the first compiles).')
_BUDGET = flags.DEFINE_float('budget_s', 480.0, 'Skip configurations once this many seconds have passed.')
_PEAK = flags.DEFINE_float('peak_tflops', 0.0, 'Peak bf16 TFLOP/s to divide by; 0: lm/flops.py for the device.')
_ATTENTION = flags.DEFINE_string('attention', '', "model.attention; '': 'cudnn' on GPU, 'xla' "
                                  'elsewhere.')
_SMOKE = flags.DEFINE_bool('smoke', False, 'Tiny model, 2 steps, any device: checks this driver.')


def build(num_layers, d_model, num_heads, vocab, seq_len, remat):
  config = base.get_config()
  config.model.update(num_layers=num_layers, d_model=d_model, num_heads=num_heads, vocab_size=vocab,
                      dtype='bfloat16', remat=remat, attention=attention_kind(), dropout=0.0)
  config.data.seq_len = seq_len
  return config


def attention_kind() -> str:
  return _ATTENTION.value or ('cudnn' if jax.default_backend() == 'gpu' else 'xla')


def random_batch(rows, seq_len, vocab, seed=0):
  rng = np.random.default_rng(seed)
  tokens = rng.integers(0, vocab, (rows, seq_len + 1)).astype(np.int32)
  return {'decoder_input_tokens': tokens[:, :-1], 'decoder_target_tokens': tokens[:, 1:],
          'decoder_loss_weights': np.ones((rows, seq_len), np.float32),
          'decoder_segment_ids': np.ones((rows, seq_len), np.int32),
          'decoder_positions': np.broadcast_to(np.arange(seq_len, dtype=np.int32), (rows, seq_len)).copy()}


def time_config(config, rows, steps, warmup):
  """(seconds per step, compile-and-warmup seconds, final loss) of `steps` train steps after `warmup`."""
  seq_len = config.data.seq_len
  model = rundir.build_model(config, config.model.vocab_size)
  tx = optim.make_optimizer(config.train)
  token_bytes = jnp.ones((config.model.vocab_size,), jnp.float32)
  launcher = parallel.Launcher(
      'single', (1, 1, 1),
      init_fn=functools.partial(step_lib.init_state, model, tx, seq_len=seq_len),
      boxed_init_fn=functools.partial(step_lib.init_state, model, tx, seq_len=seq_len, boxed=True),
      step_fn=functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=token_bytes),
      eval_fn=functools.partial(step_lib.eval_step, model=model, token_bytes=token_bytes))
  start = time.perf_counter()
  state = launcher.init(jax.random.PRNGKey(0))
  batch = launcher.place_batch(random_batch(rows, seq_len, config.model.vocab_size))
  step = launcher.step_placed  # The batch is placed once, outside the timed loop.
  metrics = None
  for _ in range(warmup):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  setup_s = time.perf_counter() - start
  start = time.perf_counter()
  for _ in range(steps):
    state, metrics = step(state, batch)
  jax.block_until_ready((state, metrics))
  seconds = (time.perf_counter() - start) / steps
  loss = float(jax.device_get(metrics['loss']))
  if launcher.step_traces != 1:
    print(f'  warning: the step was traced {launcher.step_traces} times', flush=True)
  return seconds, setup_s, loss, model.config


def parse_choices(values):
  out = []
  for v in values:
    rows, _, remat = v.partition(':')
    out.append((int(rows), remat or 'none'))
  return out


def peak_flops() -> tuple[float, str]:
  if _PEAK.value:
    return _PEAK.value * 1e12, f'{_PEAK.value:g} TFLOP/s (--peak_tflops)'
  device = jax.devices()[0]
  if device.platform == 'cpu':
    flops = flops_lib.peak_flops('bfloat16')
    return flops, f'{flops / 1e12:.3f} TFLOP/s (lm/hardware.py\'s timed {hardware.PROBE_SIZE}^3 bf16 matmul on CPU)'
  flops = flops_lib.peak_flops('bfloat16')
  return flops, f'{flops / 1e12:g} TFLOP/s (lm/flops.py PEAK_FLOPS for {device.device_kind!r})'


def main(argv):
  del argv
  run_start = time.perf_counter()
  device = jax.devices()[0]
  models = ['smoke'] if _SMOKE.value else _MODELS.value
  seq_len = 64 if _SMOKE.value else _SEQ.value
  vocab = 256 if _SMOKE.value else VOCAB
  steps, warmup = (2, 1) if _SMOKE.value else (_STEPS.value, _WARMUP.value)
  for m in models:
    if m not in MODELS:
      raise app.UsageError(f'--models: unknown model {m!r}; have {sorted(MODELS)}')
  if not _SMOKE.value and device.platform != 'gpu':
    sys.exit(f'error: the default device is {device.platform} ({device.device_kind}), not a GPU: this venv\'s '
             'jax has no CUDA backend or no GPU is visible. Use --smoke to check the driver on CPU.')
  peak, peak_note = peak_flops()
  print(f'device: {device.device_kind} ({device.platform}) x{jax.device_count()}, using 1; jax {jax.__version__}; '
        f'peak {peak_note}')
  print(f'bfloat16 matmuls, float32 params and Adam; vocab {vocab}, seq {seq_len}, attention {attention_kind()}; '
        f'{warmup} warmup + {steps} timed steps each')
  print(f'{"model":6} {"params":>8} {"batch":>5} {"remat":13} {"setup s":>8} {"ms/step":>9} {"tokens/s":>11} '
        f'{"TFLOP/s":>8} {"MFU":>6} {"loss":>7}', flush=True)
  best = {name: None for name in models}
  grids = {name: parse_choices(_CHOICES.value) if _CHOICES.value else CHOICES[name] for name in models}
  schedule = [(name, grids[name][i]) for i in range(max(map(len, grids.values())))
              for name in models if i < len(grids[name])]  # Round robin over the models.
  for name, (rows, remat) in schedule:
    layers, width, heads = MODELS[name]
    prefix = f'{name:6} {"":>8} {rows:5d} {remat:13}'
    if time.perf_counter() - run_start > _BUDGET.value:
      print(f'{prefix} skipped: --budget_s={_BUDGET.value:g} spent', flush=True)
      continue
    config = build(layers, width, heads, vocab, seq_len, remat)
    try:
      seconds, setup_s, loss, mc = time_config(config, rows, steps, warmup)
    except Exception as e:  # noqa: BLE001 - XlaRuntimeError (RESOURCE_EXHAUSTED) and friends.
      text = str(e).splitlines()[0][:160] if str(e) else type(e).__name__
      kind = 'OOM' if 'RESOURCE_EXHAUSTED' in str(e) or 'out of memory' in str(e).lower() else 'error'
      print(f'{prefix} {kind}: {text}', flush=True)
      gc.collect()
      jax.clear_caches()
      continue
    tokens_per_s = rows * seq_len / seconds
    flops = tokens_per_s * flops_lib.flops_per_token(mc, seq_len)
    n = flops_lib.matmul_params(mc) + mc.max_len * mc.d_model
    row = dict(model=name, params=n, rows=rows, remat=remat, ms=seconds * 1e3, tokens_per_s=tokens_per_s,
               tflops=flops / 1e12, mfu=flops / peak, loss=loss, setup_s=setup_s)
    print(f'{name:6} {n / 1e6:7.1f}M {rows:5d} {remat:13} {setup_s:8.1f} {row["ms"]:9.1f} '
          f'{tokens_per_s:11,.0f} {row["tflops"]:8.1f} {row["mfu"]:6.1%} {loss:7.3f}', flush=True)
    if best[name] is None or tokens_per_s > best[name]['tokens_per_s']:
      best[name] = row
    gc.collect()
    jax.clear_caches()
  results = list(best.items())
  print()
  for name, best in results:
    if best is None:
      print(f'best {name}: none ran')
    else:
      print(f'best {name}: batch {best["rows"]} remat {best["remat"]}: {best["tokens_per_s"]:,.0f} tokens/s, '
            f'{best["tflops"]:.1f} TFLOP/s, MFU {best["mfu"]:.1%} ({best["ms"]:.1f} ms/step)')
  print(f'total {time.perf_counter() - run_start:.0f}s')


if __name__ == '__main__':
  app.run(main)
