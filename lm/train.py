"""Training: `TrainState`, pure `train_step` / `eval_step`, and `train_and_evaluate(config, workdir)`.

One loop trains both architectures of `lm/model.py`: the decoder-only LM on `data.task='lm'` rows of
`data.seq_len` tokens, the encoder-decoder on 'seq2seq' / 'span_corruption' rows of `data.max_input_len` encoder
and `data.max_target_len` decoder tokens. `config.init_from` starts a fine-tuning run from another run's params.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Callable, Iterable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax

from lm import checkpoint as checkpoint_lib
from lm import decode
from lm import flops as flops_lib
from lm import loss as loss_lib
from lm import model as model_lib
from lm import optim
from lm import parallel
from lm import run_config
from lm import tokenizers
from lm.data import pipeline
from lm.data import tasks

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  step: Array  # int32 scalar: optimizer steps taken.
  params: Any
  opt_state: Any
  rng: Array  # Base key; step s uses fold_in(rng, s), so resuming replays the same randomness.


class NonFiniteLossError(FloatingPointError):
  pass


_TOKENIZER_DIR = 'tokenizer'  # In a run directory, where `pipeline.get_tokenizer` keeps the run's tokenizer.


# ----------------------------------------------------------------------------------------------------------
# Pure steps.


def init_state(model: nn.Module, tx: optax.GradientTransformation, rng: Array, seq_len: int, *,
               input_len: int = 0, boxed: bool = False) -> TrainState:
  """A fresh state for rows of `seq_len` decoder tokens (and `input_len` encoder tokens: encoder-decoder only;
  `row_lengths` gives both from a config). `boxed=True` keeps flax's logical-axis metadata on params and
  optimizer state, which `parallel.shardings_from_logical` reads; training uses plain arrays."""
  params_rng, state_rng = jax.random.split(rng)
  params = model.init_variables(params_rng, target_len=seq_len, input_len=input_len)['params']
  if not boxed:
    params = nn.meta.unbox(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=state_rng)


def train_step(state: TrainState, batch: dict[str, Array], *, model: nn.Module,
               tx: optax.GradientTransformation, token_bytes: Array, grad_accum_steps: int = 1,
               label_smoothing: float = 0.0, axis_name: str | None = None) -> tuple[TrainState, dict[str, Array]]:
  """One optimizer step on the mean token loss of `batch` (with `label_smoothing`, of the smoothed cross entropy;
  the metrics keep the NLL). Metrics are sums plus norms, all float32.

  Each microbatch's summed token loss is divided by the target count of the whole batch, so
  `grad_accum_steps` microbatches (a `lax.scan`) and devices (`lax.psum` over `axis_name`, under pmap) add up
  to exactly the large batch's mean-loss gradient even when their target counts differ.
  """
  rng = jax.random.fold_in(state.rng, state.step) if model.config.dropout else None
  if rng is not None and axis_name:
    rng = jax.random.fold_in(rng, jax.lax.axis_index(axis_name))  # Each device its own dropout mask.
  # The whole batch's target count is known before any gradient: dividing each microbatch's summed loss by it
  # makes the gradients sum to the mean-loss gradient with no extra pass over them.
  total = jnp.sum(batch['decoder_loss_weights'])
  total = jnp.maximum(jax.lax.psum(total, axis_name) if axis_name else total, 1.0)

  def grads_and_sums(micro, micro_rng):
    targets, weights = micro['decoder_target_tokens'], micro['decoder_loss_weights']

    def scaled_loss(params):
      logits = model.forward(params, micro, rng=micro_rng)
      nats, count = loss_lib.cross_entropy(logits, targets, weights)
      if not label_smoothing:
        return nats / total, (nats, count)
      smoothed = loss_lib.smoothed_cross_entropy(logits, targets, weights, label_smoothing)
      return smoothed / total, (nats, count)

    (_, (nats, count)), grads = jax.value_and_grad(scaled_loss, has_aux=True)(state.params)
    return grads, {'nats': nats, 'tokens': count, 'bytes': loss_lib.target_bytes(targets, weights, token_bytes)}

  if grad_accum_steps == 1:
    grads, sums = grads_and_sums(batch, rng)
  else:
    micro = jax.tree.map(lambda x: x.reshape(grad_accum_steps, -1, *x.shape[1:]), batch)

    def accumulate(total, indexed_micro):
      i, mb = indexed_micro
      step = grads_and_sums(mb, None if rng is None else jax.random.fold_in(rng, i))
      return jax.tree.map(jnp.add, total, step), None

    zero = jax.eval_shape(grads_and_sums, jax.tree.map(lambda x: x[0], micro), rng)
    zero = jax.tree.map(lambda x: jnp.zeros(x.shape, x.dtype), zero)
    (grads, sums), _ = jax.lax.scan(accumulate, zero, (jnp.arange(grad_accum_steps), micro))
  if axis_name:
    grads, sums = jax.lax.psum((grads, sums), axis_name)
  updates, opt_state = tx.update(grads, state.opt_state, state.params)
  params = optax.apply_updates(state.params, updates)
  metrics = {'loss': sums['nats'] / total, **sums, 'grad_norm': optax.global_norm(grads)}
  return state.replace(step=state.step + 1, params=params, opt_state=opt_state), metrics


def eval_step(params: Any, batch: dict[str, Array], *, model: nn.Module,
              token_bytes: Array, axis_name: str | None = None) -> dict[str, Array]:
  """Summed nats, target tokens, bytes and correct predictions of one batch (padding has weight 0)."""
  logits = model.forward(params, batch)
  targets, weights = batch['decoder_target_tokens'], batch['decoder_loss_weights']
  nats, count = loss_lib.cross_entropy(logits, targets, weights)
  sums = {'nats': nats, 'tokens': count, 'bytes': loss_lib.target_bytes(targets, weights, token_bytes),
          'correct': loss_lib.token_accuracy(logits, targets, weights)}
  return jax.lax.psum(sums, axis_name) if axis_name else sums


def summarize(sums: dict[str, float]) -> dict[str, float]:
  """Mean loss, bits per byte and accuracy from summed metrics."""
  out = {'loss': sums['nats'] / max(sums['tokens'], 1.0),
         'bits_per_byte': loss_lib.bits_per_byte(sums['nats'], sums['bytes'])}
  if 'correct' in sums:
    out['accuracy'] = sums['correct'] / max(sums['tokens'], 1.0)
  return out


def evaluate(launcher: parallel.Launcher, state: TrainState, batches: Iterable[dict[str, np.ndarray]]
             ) -> dict[str, float]:
  totals: dict[str, float] = {}
  for batch in batches:
    for key, value in jax.device_get(launcher.evaluate(state, batch)).items():
      totals[key] = totals.get(key, 0.0) + float(value)
  if not totals:
    raise ValueError('the evaluation split produced no batches')
  return summarize(totals)


# ----------------------------------------------------------------------------------------------------------
# Config checks: fail before any work, naming the key and the value.


def validate_config(config: ml_collections.ConfigDict) -> None:
  t, d = config.train, config.data
  seq_len, input_len = row_lengths(config)
  architecture = config.model.architecture
  wanted = 'decoder_only' if d.task == 'lm' else 'encoder_decoder'
  checks = [
      (d.task in pipeline.TASKS, 'data.task', d.task, f'must be one of {pipeline.TASKS}'),
      (d.task not in pipeline.TASKS or architecture not in ('decoder_only', 'encoder_decoder')  # Else model's.
       or architecture == wanted, 'data.task', d.task,
       f'needs model.architecture={wanted!r}, got model.architecture={architecture!r}'),
      (t.num_steps > 0, 'train.num_steps', t.num_steps, 'must be positive'),
      (t.batch_size > 0, 'train.batch_size', t.batch_size, 'must be positive'),
      (t.learning_rate > 0 and math.isfinite(t.learning_rate), 'train.learning_rate', t.learning_rate,
       'must be positive and finite'),
      (t.warmup_steps >= 0, 'train.warmup_steps', t.warmup_steps, 'must be >= 0'),
      (0 <= t.min_lr_ratio <= 1, 'train.min_lr_ratio', t.min_lr_ratio, 'must be in [0, 1]'),
      (0 < t.decay_fraction <= 1, 'train.decay_fraction', t.decay_fraction, 'must be in (0, 1]'),
      (t.weight_decay >= 0, 'train.weight_decay', t.weight_decay, 'must be >= 0'),
      (0 <= t.beta1 < 1, 'train.beta1', t.beta1, 'must be in [0, 1)'),
      (0 <= t.beta2 < 1, 'train.beta2', t.beta2, 'must be in [0, 1)'),
      (t.grad_clip >= 0, 'train.grad_clip', t.grad_clip, 'must be >= 0 (0 disables clipping)'),
      (0 <= t.label_smoothing < 1, 'train.label_smoothing', t.label_smoothing, 'must be in [0, 1)'),
      (t.schedule in ('cosine', 'constant', 'wsd'), 'train.schedule', t.schedule,
       'must be "cosine", "constant" or "wsd"'),
      (t.keep_checkpoints > 0, 'train.keep_checkpoints', t.keep_checkpoints, 'must be positive'),
      (d.seq_len > 0, 'data.seq_len', d.seq_len, 'must be positive'),
      (d.max_input_len > 0, 'data.max_input_len', d.max_input_len, 'must be positive'),
      (d.max_target_len > 0, 'data.max_target_len', d.max_target_len, 'must be positive'),
      (0 <= d.example_input_len <= d.max_input_len, 'data.example_input_len', d.example_input_len,
       'must be between 0 and data.max_input_len'),
      (d.num_workers >= 0, 'data.num_workers', d.num_workers, 'must be >= 0'),
      (not (d.pack and config.model.attention == 'cudnn'), 'data.pack', d.pack,
       "cannot be combined with model.attention='cudnn' (its lengths mask holds one document per row)"),
  ]
  checks += [
      (t.schedule != 'wsd' or t.warmup_steps + round(t.decay_fraction * t.num_steps) <= t.num_steps,
       'train.decay_fraction', t.decay_fraction,
       f'leaves no room after {t.warmup_steps} warmup steps in {t.num_steps} steps (schedule wsd)'),
      (config.model.max_len == 0 or config.model.max_len >= max(seq_len, input_len), 'model.max_len',
       config.model.max_len, f'must be 0 or >= {_length_keys(config)} ({max(seq_len, input_len)})'),
      (config.sample.temperature >= 0, 'sample.temperature', config.sample.temperature, 'must be >= 0'),
      (config.sample.top_k >= 0, 'sample.top_k', config.sample.top_k, 'must be >= 0 (0 disables)'),
      (config.sample.num_tokens >= 0, 'sample.num_tokens', config.sample.num_tokens, 'must be >= 0'),
  ]
  for key in ('log_every', 'eval_every', 'checkpoint_every', 'eval_batch_size'):
    checks.append((t[key] > 0, f'train.{key}', t[key], 'must be positive'))
  p = config.parallel
  checks.append((p.strategy in parallel.STRATEGIES, 'parallel.strategy', p.strategy,
                 f'must be one of {parallel.STRATEGIES}'))
  checks.append((t.grad_accum_steps > 0, 'train.grad_accum_steps', t.grad_accum_steps, 'must be positive'))
  if p.strategy == 'mesh':
    mesh = parallel.make_mesh(p.mesh_shape)  # Raises on a shape that does not fit the devices.
    shards, what = mesh.shape['data'] * mesh.shape['fsdp'], 'data x fsdp mesh axes'
  else:
    shards, what = (jax.device_count(), 'device count') if p.strategy == 'pmap' else (1, 'device count')
  checks.append((t.batch_size % (shards * t.grad_accum_steps) == 0, 'train.batch_size', t.batch_size,
                 f'must be divisible by the {what} ({shards}) times train.grad_accum_steps '
                 f'({t.grad_accum_steps})'))
  checks.append((t.eval_batch_size % shards == 0, 'train.eval_batch_size', t.eval_batch_size,
                 f'must be divisible by the {what} ({shards})'))
  for ok, key, value, why in checks:
    if not ok:
      raise ValueError(f'{key}={value!r} {why}')
  model_lib.ModelConfig.from_config(config.model, vocab_size=1, max_len=max(seq_len, input_len))  # Model keys.


def row_lengths(config: ml_collections.ConfigDict) -> tuple[int, int]:
  """(decoder, encoder) tokens per row: (data.seq_len, 0) for the decoder-only LM, (data.max_target_len,
  data.max_input_len) for the encoder-decoder."""
  if config.model.architecture == 'encoder_decoder':
    return config.data.max_target_len, config.data.max_input_len
  return config.data.seq_len, 0


def _length_keys(config: ml_collections.ConfigDict) -> str:
  if config.model.architecture == 'encoder_decoder':
    return 'max(data.max_input_len, data.max_target_len)'
  return 'data.seq_len'


# ----------------------------------------------------------------------------------------------------------
# The run directory's logs.


class MetricsLog:
  """Appends one JSON object per event to metrics.jsonl and mirrors scalars to TensorBoard.

  A resumed run first drops the events logged after `start_step` (steps it will redo), so curves never
  zig-zag.
  """

  def __init__(self, workdir: str, start_step: int):
    from tensorboardX import SummaryWriter  # Only runs that log pay for the import.
    path = os.path.join(workdir, 'metrics.jsonl')
    if os.path.exists(path):
      with open(path) as f:
        kept = [line for line in f if line.strip() and json.loads(line)['step'] <= start_step]
      with open(path + '.tmp', 'w') as f:
        f.writelines(kept)
      os.replace(path + '.tmp', path)
    self._jsonl = open(path, 'a')
    self._tensorboard = SummaryWriter(os.path.join(workdir, 'tensorboard'), purge_step=start_step + 1)

  def write(self, step: int, split: str, metrics: dict[str, float]) -> None:
    self._jsonl.write(json.dumps({'step': step, 'split': split, **metrics}) + '\n')
    self._jsonl.flush()
    for key, value in metrics.items():
      self._tensorboard.add_scalar(f'{split}/{key}', value, step)
    self._tensorboard.flush()

  def close(self) -> None:
    self._jsonl.close()
    self._tensorboard.close()


class NullLog:
  """What processes other than 0 log: nothing."""

  def write(self, *args, **kwargs) -> None:
    pass

  def close(self) -> None:
    pass


@contextlib.contextmanager
def stop_requests():
  """Turns the first Ctrl-C or SIGTERM into a request to stop after saving; a second Ctrl-C interrupts."""
  requested: list[int] = []

  def handler(signum, frame):
    if requested and signum == signal.SIGINT:
      raise KeyboardInterrupt
    requested.append(signum)
    print(f'\nreceived {signal.Signals(signum).name}: saving a checkpoint, then stopping', flush=True)

  previous = {}
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, handler)
  except ValueError:  # Not the main thread (e.g. a notebook worker): no handlers, no graceful stop.
    pass
  try:
    yield requested
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)


# ----------------------------------------------------------------------------------------------------------
# The loop.


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> nn.Module:
  """`DecoderLM` or `EncoderDecoder`, as config.model.architecture says; max_len 0 becomes the longest row."""
  return model_lib.build_model(model_lib.ModelConfig.from_config(
      config.model, vocab_size=vocab_size, max_len=max(row_lengths(config))))


EvalHook = Callable[[int, Any, 'MetricsLog | NullLog'], None]


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       eval_hook: EvalHook | None = None) -> dict[str, float]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final validation metrics.

  A run without a checkpoint of its own and with `config.init_from` set starts from that run's latest params
  (and its tokenizer), with a fresh optimizer at step 0. `eval_hook(step, params, log)`, if given, runs at every
  validation point after the loss pass, on every process (`log.write` is a no-op outside process 0); e.g. the
  generation metrics of `lm/main.py`. `params` are the live training params: read them, keep no reference,
  since the next step donates their buffers.
  """
  p = config.parallel
  parallel.initialize_distributed(p.coordinator_address, p.num_processes, p.process_id)
  validate_config(config)
  is_main = jax.process_index() == 0  # Only process 0 writes logs, config and samples; all save checkpoints.
  say = print if is_main else (lambda *args, **kwargs: None)
  workdir = os.path.abspath(os.path.expanduser(workdir))
  os.makedirs(workdir, exist_ok=True)
  if is_main:
    with open(os.path.join(workdir, 'config.json'), 'w') as f:
      f.write(config.to_json_best_effort(indent=2))

  t = config.train
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=t.keep_checkpoints)
  latest = checkpointer.latest_step()
  init_from = config.init_from and os.path.abspath(os.path.expanduser(config.init_from))
  if init_from and latest is None:
    _pretrained_checkpoints(init_from).close()  # Fails before any work if there is none.
    _copy_tokenizer(init_from, workdir, config)  # Its embeddings index its vocabulary.
  tokenizer = pipeline.get_tokenizer(config.data, workdir)
  model = build_model(config, tokenizer.vocab_size)
  tx = optim.make_optimizer(config.train)
  schedule = optim.make_schedule(config.train)
  seq_len, input_len = row_lengths(config)

  token_bytes = jnp.asarray(tokenizer.token_bytes, jnp.float32)
  launcher = parallel.Launcher(
      p.strategy, p.mesh_shape,
      init_fn=functools.partial(init_state, model, tx, seq_len=seq_len, input_len=input_len),
      boxed_init_fn=functools.partial(init_state, model, tx, seq_len=seq_len, input_len=input_len, boxed=True),
      step_fn=functools.partial(train_step, model=model, tx=tx, token_bytes=token_bytes,
                                grad_accum_steps=t.grad_accum_steps, label_smoothing=t.label_smoothing),
      eval_fn=functools.partial(eval_step, model=model, token_bytes=token_bytes))
  state = launcher.init(jax.random.PRNGKey(config.seed))
  train_iter = pipeline.make_train_iterator(
      config.data, tokenizer, batch_size=t.batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count())
  if latest is not None:
    state = launcher.from_checkpoint(checkpointer.restore(latest, launcher.to_checkpoint(state), train_iter))
    say(f'resumed from {checkpointer.directory} at step {latest}', flush=True)
    if init_from:
      say(f'init_from={config.init_from!r} ignored: this run resumes from its own checkpoint', flush=True)
  elif init_from:
    state, pretrained_step = _with_pretrained_params(launcher, state, init_from)
    say(f'params from {init_from} step {pretrained_step} (init_from); fresh optimizer, step 0', flush=True)

  # Nothing is dropped silently. (The pipeline tokenizes the split up front, so counting costs little more.)
  stats = pipeline.split_stats(config.data, tokenizer, 'train')
  say(f'data: {stats.examples:,} train examples, {stats.target_tokens:,} target tokens; '
      f'{stats.truncated_tokens:,} tokens truncated, {stats.dropped_examples:,} examples dropped', flush=True)
  # Model FLOPs of a row (encoder and decoder), PaLM's accounting; tokens are row positions on both sides.
  flops_per_step = t.batch_size * flops_lib.flops_per_row(model.config, target_len=seq_len, input_len=input_len)
  peak = flops_lib.peak_flops(model.config.dtype) * jax.device_count()
  tokens_per_step = t.batch_size * (seq_len + input_len)
  num_params = flops_lib.count_params(launcher.to_checkpoint(state).params)
  say(f'model: {config.model.architecture}, {num_params:,} params, '
      f'{flops_per_step / tokens_per_step / 1e6:.1f} MFLOPs/token; {t.num_steps} steps of {tokens_per_step:,} '
      f'tokens; workdir {workdir}', flush=True)
  step = int(launcher.to_checkpoint(state).step)
  log = MetricsLog(workdir, start_step=step) if is_main else NullLog()
  log.write(step, 'data', dataclasses.asdict(stats))  # Train-split token accounting, once per run.
  window = {'nats': 0.0, 'tokens': 0.0, 'bytes': 0.0, 'steps': 0}
  window_start, run_start, start_step = time.perf_counter(), time.perf_counter(), step
  last_saved = checkpointer.latest_step()

  def check_finite(s: int, metrics: dict[str, Array]) -> dict[str, float]:
    """Reads step s's metrics to the host; stops the run, keeping the checkpoints, if they are not finite."""
    host = {k: float(v) for k, v in jax.device_get(metrics).items()}
    if not (math.isfinite(host['loss']) and math.isfinite(host['grad_norm'])):
      checkpointer.wait()
      raise NonFiniteLossError(
          f'loss={host["loss"]} grad_norm={host["grad_norm"]} at step {s}: training stopped without saving. '
          f'The last good checkpoint (step {checkpointer.latest_step()}) is kept in {checkpointer.directory}. '
          'Lower train.learning_rate or raise train.warmup_steps, then rerun to resume from it.')
    return host

  def log_train(s: int, grad_norm: float) -> None:
    nonlocal window_start
    elapsed = time.perf_counter() - window_start
    steps_per_s = window['steps'] / elapsed
    metrics = {**summarize(window), 'learning_rate': float(schedule(s - 1)), 'grad_norm': grad_norm,
               'tokens_seen': s * tokens_per_step, 'flops_seen': s * flops_per_step,
               'wall_s': time.perf_counter() - run_start, 'tokens_per_s': steps_per_s * tokens_per_step,
               'mfu': steps_per_s * flops_per_step / peak}
    log.write(s, 'train', metrics)
    eta = (t.num_steps - s) / steps_per_s
    say(f'step {s:6d}/{t.num_steps}  loss {metrics["loss"]:.4f}  bpb {metrics["bits_per_byte"]:.3f}  '
          f'lr {metrics["learning_rate"]:.2e}  {metrics["tokens_per_s"]:,.0f} tok/s  mfu {metrics["mfu"]:.1%}  '
          f'eta {eta:.0f}s', flush=True)
    window.update(nats=0.0, tokens=0.0, bytes=0.0, steps=0)
    window_start = time.perf_counter()

  def run_eval(s: int, record: bool = True) -> dict[str, float]:
    batches = pipeline.make_eval_batches(config.data, tokenizer, 'validation', batch_size=t.eval_batch_size)
    metrics = evaluate(launcher, state, batches)
    if record:
      log.write(s, 'validation', {**metrics, 'tokens_seen': s * tokens_per_step,
                                  'wall_s': time.perf_counter() - run_start})
    say(f'step {s:6d}  validation loss {metrics["loss"]:.4f}  bits/byte {metrics["bits_per_byte"]:.3f}',
          flush=True)
    if record and eval_hook is not None:
      eval_hook(s, launcher.to_checkpoint(state).params, log)
    return metrics

  final = {}
  try:
    with stop_requests() as stop:
      pending = None  # (step, metrics) dispatched but not yet read: keeps the device a step ahead of the host.
      while step < t.num_steps:
        state, metrics = launcher.step(state, next(train_iter))
        step += 1
        if pending is not None:
          _accumulate(window, check_finite(*pending))
        pending = (step, metrics)
        # Read the stop request once: a signal landing later in this iteration is handled after the next step.
        stopping = bool(stop)
        at_end = step == t.num_steps
        at_log = step % t.log_every == 0 or at_end
        at_save = step % t.checkpoint_every == 0 or at_end or stopping
        at_eval = step % t.eval_every == 0 or at_end
        if not (at_log or at_save or at_eval):
          continue
        host = check_finite(*pending)  # Step `step` is finite before its state is logged or saved.
        _accumulate(window, host)
        pending = None
        if at_log:
          log_train(step, host['grad_norm'])
        if at_save:
          checkpointer.save(step, launcher.to_checkpoint(state), train_iter)
          last_saved = step
        if at_eval:
          final = run_eval(step)
        if stopping:
          break
    if step >= t.num_steps and not final:  # Resumed a finished run: evaluate what is there, log nothing.
      final = run_eval(step, record=False)
  finally:
    checkpointer.wait()
    checkpointer.close()
    log.close()
  if step < t.num_steps:
    say(f'stopped at step {step}; checkpoint saved at step {last_saved}. Rerun the same command to resume.')
    return final
  say(f'done: {step - start_step} steps in {time.perf_counter() - run_start:.0f}s', flush=True)
  if jax.process_count() > 1:
    say('multi-host run: sample with `./run.sh sample --workdir=...` from one process')
    return final
  if not config.sample.num_tokens:
    return final
  params = launcher.to_checkpoint(state).params
  if config.model.architecture == 'encoder_decoder':
    text = _validation_predictions(model, params, tokenizer, config)
    heading = f'--- step {step}, validation input -> prediction (target), greedy'
  else:
    prompt = config.sample.prompt
    try:
      tokenizer.encode(prompt)
    except ValueError as e:  # E.g. the default 'ROMEO:' on a user corpus without capitals.
      say(f'sample.prompt={prompt!r} cannot be encoded ({e}); sampling from an empty prompt instead')
      prompt = ''
    text = generate(model, params, tokenizer, prompt, num_tokens=config.sample.num_tokens,
                    temperature=config.sample.temperature, top_k=config.sample.top_k, seed=config.seed)
    heading = f'--- step {step}, prompt {prompt!r}'
  with open(os.path.join(workdir, 'samples.txt'), 'a') as f:  # Single process here.
    f.write(f'{heading}\n{text}\n')
  say(f'--- sample (step {step}) ---\n{text}', flush=True)
  return final


# ----------------------------------------------------------------------------------------------------------
# Fine-tuning from another run (config.init_from).


def _pretrained_checkpoints(run_dir: str) -> checkpoint_lib.Checkpointer:
  """A read-only checkpointer over `run_dir`'s checkpoints; raises if there are none."""
  directory = os.path.join(run_dir, 'checkpoints')
  if os.path.isdir(directory):
    checkpointer = checkpoint_lib.Checkpointer(directory, keep=1, read_only=True)
    if checkpointer.latest_step() is not None:
      return checkpointer
    checkpointer.close()
  raise FileNotFoundError(f'init_from={run_dir!r} has no checkpoint in {directory}: train that run first, or set '
                          'init_from to a run directory that has one.')


def _copy_tokenizer(run_dir: str, workdir: str, config: ml_collections.ConfigDict) -> None:
  """Gives this run `run_dir`'s tokenizer (unless it has one): pretrained embeddings index its ids."""
  source, target = (os.path.join(d, _TOKENIZER_DIR) for d in (run_dir, workdir))
  if not os.path.isdir(source):
    raise FileNotFoundError(f'init_from={run_dir!r} has no tokenizer in {source}: is it a run directory?')
  tokenizer, data = tokenizers.load_tokenizer(source), config.data
  kind = tokenizer.to_dict()['kind']
  wanted = {'tokenizer': kind}
  if kind == 'sentencepiece':
    wanted.update(spm_model_type=tokenizer.model_type, spm_vocab_size=tokenizer.vocab_size)
  if any(data[key] != value for key, value in wanted.items()):
    raise ValueError(f'init_from={run_dir!r} trained with its own tokenizer, which this run must use (its '
                     f'embeddings index its ids): set ' + ' '.join(f'data.{k}={v!r}' for k, v in wanted.items())
                     + ' (this config has ' + ' '.join(f'data.{k}={data[k]!r}' for k in wanted) + ').')
  if not os.path.isdir(target):
    tokenizer.save(target)


def _with_pretrained_params(launcher: parallel.Launcher, state: TrainState, run_dir: str) -> tuple[TrainState, int]:
  """(`state` (fresh) with the params of `run_dir`'s latest checkpoint, placed as `state`'s own; that step)."""
  fresh = launcher.to_checkpoint(state)
  checkpointer = _pretrained_checkpoints(run_dir)
  try:
    step = checkpointer.latest_step()
    saved = checkpointer.restore(step)['params']  # As saved, with any optimizer's state: read and dropped.
  finally:
    checkpointer.close()
  _check_same_params(fresh.params, saved, f'init_from={run_dir!r} step {step}')
  params = jax.tree.map(lambda old, new: jax.device_put(np.asarray(new, old.dtype), old.sharding),
                        fresh.params, saved)
  return launcher.from_checkpoint(fresh.replace(params=params)), step


def _check_same_params(want: Any, got: Any, source: str) -> None:
  """Raises naming the first parameter whose presence or shape differs between `want` and `got`."""
  def shapes(tree):
    return {'/'.join(str(getattr(k, 'key', getattr(k, 'idx', k))) for k in path): tuple(np.shape(leaf))
            for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}

  want, got = shapes(want), shapes(got)
  for name in sorted(want.keys() | got.keys()):
    if want.get(name) != got.get(name):
      raise ValueError(
          f'{source}: parameter {name} has shape {want.get(name, "(missing)")} in this model but '
          f'{got.get(name, "(missing)")} in the checkpoint; fine-tune with the pretrained run\'s config.model.')


def _accumulate(window: dict[str, float], host: dict[str, float]) -> None:
  for key in ('nats', 'tokens', 'bytes'):
    window[key] += host[key]
  window['steps'] += 1


def generate(model: nn.Module, params: Any, tokenizer, prompt: str, *, num_tokens: int, temperature: float,
             top_k: int = 0, seed: int = 0) -> str:
  """The prompt followed by a sampled continuation of up to `num_tokens` tokens (fewer if it samples eos), from
  a decoder-only model. An empty prompt starts a new document (after an eos).

  Decoding runs on a KV cache of model.config.max_len positions, in chunks of n = min(num_tokens, max_len // 2)
  new tokens: each chunk reads the last max_len - n tokens of the text so far into a fresh cache, so a long
  continuation slides its context window by n tokens at a time. Every chunk has the same shapes: one compile.
  """
  context = [int(t) for t in tokenizer.encode(prompt)] if prompt else [tokenizer.eos_id]
  if num_tokens <= 0:
    return prompt
  max_len = model.config.max_len
  n = min(num_tokens, max(max_len // 2, 1))
  window = max_len - n
  if window < 1:
    raise ValueError(f'model.max_len={max_len} leaves no room for a prompt; sampling needs max_len >= 2')

  rng, new = jax.random.PRNGKey(seed), []
  for chunk in range(-(-num_tokens // n)):
    recent = (context + new)[-window:]
    prompt_ids = np.zeros((1, window), np.int32)
    prompt_ids[0, :len(recent)] = recent
    tokens, lengths = jax.device_get(_sample_chunk(
        params, prompt_ids, np.array([len(recent)], np.int32), jax.random.fold_in(rng, chunk), model=model,
        num_new_tokens=n, temperature=temperature, top_k=top_k, eos_id=tokenizer.eos_id))
    tokens = [int(t) for t in tokens[0, :lengths[0]]]
    if tokenizer.eos_id in tokens:
      new += tokens[:tokens.index(tokenizer.eos_id)]
      break
    new += tokens
  return prompt + tokenizer.decode(np.asarray(new[:num_tokens], np.int32))


@functools.partial(jax.jit, static_argnames=('model', 'num_new_tokens', 'temperature', 'top_k', 'eos_id'))
def _sample_chunk(params, prompt_ids, prompt_length, rng, *, model, num_new_tokens, temperature, top_k, eos_id):
  cache = model.init_decode_cache(params, prompt_ids.shape[0], model.config.max_len)
  return decode.temperature_sample(model.make_logits_fn(params), cache, prompt_ids, prompt_length,
                                   num_new_tokens=num_new_tokens, rng=rng, temperature=temperature, top_k=top_k,
                                   eos_id=eos_id)


def predict(model: nn.Module, params: Any, encoder_input_tokens: np.ndarray, encoder_segment_ids: np.ndarray, *,
            max_new_tokens: int, eos_id: int, temperature: float = 0.0, top_k: int = 0, seed: int = 0
            ) -> list[np.ndarray]:
  """An encoder-decoder's output ids for each row of `encoder_input_tokens[B, L_in]` (segment ids 0 on padding),
  up to `max_new_tokens` each, without the eos; greedy at temperature 0."""
  tokens, lengths = jax.device_get(_predict(
      params, np.asarray(encoder_input_tokens, np.int32), np.asarray(encoder_segment_ids, np.int32),
      jax.random.PRNGKey(seed), model=model, max_new_tokens=max_new_tokens, temperature=temperature, top_k=top_k,
      eos_id=eos_id))
  return [row[:n - 1] if n and row[n - 1] == eos_id else row[:n] for row, n in zip(tokens, lengths)]


@functools.partial(jax.jit, static_argnames=('model', 'max_new_tokens', 'temperature', 'top_k', 'eos_id'))
def _predict(params, encoder_input_tokens, encoder_segment_ids, rng, *, model, max_new_tokens, temperature, top_k,
             eos_id):
  cache, encoded = model.encode_for_decoding(params, encoder_input_tokens, encoder_segment_ids, max_new_tokens)
  batch = encoder_input_tokens.shape[0]
  start = jnp.zeros((batch, 1), jnp.int32)  # T5's decoder start token is the pad id 0.
  return decode.temperature_sample(model.make_logits_fn(params, encoded), cache, start,
                                   jnp.ones((batch,), jnp.int32), num_new_tokens=max_new_tokens, rng=rng,
                                   temperature=temperature, top_k=top_k, eos_id=eos_id)


def _validation_predictions(model: nn.Module, params: Any, tokenizer, config: ml_collections.ConfigDict,
                            num_examples: int = 4) -> str:
  """`input -> prediction (target)` lines, greedy, for the first validation examples, one per row."""
  data = ml_collections.ConfigDict(config.data.to_dict())
  data.pack = False  # One example per row.
  batch = next(pipeline.make_eval_batches(data, tokenizer, 'validation', batch_size=num_examples))
  predictions = predict(model, params, batch['encoder_input_tokens'], batch['encoder_segment_ids'],
                        max_new_tokens=config.data.max_target_len, eos_id=tokenizer.eos_id)
  lines = []
  for i, prediction in enumerate(predictions):
    if not batch['encoder_segment_ids'][i].any():  # A padding row of a split shorter than num_examples.
      continue
    inputs, targets = (_text(tokenizer, batch[name][i], batch[weights][i] > 0, tokenizer.eos_id)
                       for name, weights in (('encoder_input_tokens', 'encoder_segment_ids'),
                                             ('decoder_target_tokens', 'decoder_loss_weights')))
    lines.append(f'{inputs!r} -> {tokenizer.decode(prediction)!r} ({targets!r})')
  return '\n'.join(lines)


def _text(tokenizer, ids: np.ndarray, keep: np.ndarray, eos_id: int) -> str:
  ids = ids[keep]
  return tokenizer.decode(ids[:-1] if len(ids) and ids[-1] == eos_id else ids)


def load_run(workdir: str, config: ml_collections.ConfigDict | None = None
             ) -> tuple[ml_collections.ConfigDict, Any, nn.Module, Any, int]:
  """(config, tokenizer, model, params, step) of the latest checkpoint in a run directory.

  `config` None reads the run's own config.json; a given one must describe the same model.
  """
  workdir = os.path.abspath(os.path.expanduser(workdir))
  saved = run_config.load(workdir)  # Raises first if `workdir` is no run directory.
  config = saved if config is None else config
  _fill_model_defaults(config)  # The command line's config is the run's own config.json too.
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=1, read_only=True)
  try:
    step = checkpointer.latest_step()
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {checkpointer.directory}: train first (./run.sh train '
                              f'--workdir={workdir})')
    tokenizer = pipeline.get_tokenizer(config.data, workdir)
    model = build_model(config, tokenizer.vocab_size)
    seq_len, input_len = row_lengths(config)
    init = functools.partial(init_state, model, optim.make_optimizer(config.train), seq_len=seq_len,
                             input_len=input_len)
    state = checkpointer.restore(step, jax.eval_shape(init, jax.random.PRNGKey(0)))
  finally:
    checkpointer.close()
  return config, tokenizer, model, state.params, step


def _fill_model_defaults(config: ml_collections.ConfigDict) -> None:
  """Gives a run's model config the keys added since the run was made, at their defaults.

  A model option is added with the default that builds the model as before (model.architecture came with the
  encoder-decoder, and runs made before it are decoder-only), so an older run directory loads as it was trained.
  """
  with config.unlocked():
    for field in dataclasses.fields(model_lib.ModelConfig):
      if field.name not in config.model and field.default is not dataclasses.MISSING:
        config.model[field.name] = field.default


def sample_from_workdir(workdir: str, prompt: str | None = None, *, num_tokens: int | None = None,
                        temperature: float | None = None, top_k: int | None = None, seed: int | None = None) -> str:
  """Samples from the latest checkpoint of a run directory, with the run's own config and tokenizer.

  Arguments left as None take the run's `config.sample` values (and `config.seed`). For an encoder-decoder run
  the prompt is the input (data.prefix is put in front) and the result its prediction, up to
  data.max_target_len tokens and greedy unless `temperature` is given; without a prompt, the greedy
  predictions for the first validation examples.
  """
  config, tokenizer, model, params, _ = load_run(workdir)
  pick = lambda value, default: default if value is None else value
  if config.model.architecture == 'encoder_decoder':
    if prompt is None:
      return _validation_predictions(model, params, tokenizer, config)
    text = config.data.prefix + tasks.model_input(prompt, config.data)
    ids = np.concatenate([tokenizer.encode(text), [tokenizer.eos_id]])
    ids = ids[:config.data.max_input_len][None].astype(np.int32)
    prediction, = predict(model, params, ids, np.ones_like(ids), eos_id=tokenizer.eos_id,
                          max_new_tokens=pick(num_tokens, config.data.max_target_len),
                          temperature=pick(temperature, 0.0),
                          top_k=pick(top_k, config.sample.top_k), seed=pick(seed, config.seed))
    return tokenizer.decode(prediction)
  return generate(model, params, tokenizer, pick(prompt, config.sample.prompt),
                  num_tokens=pick(num_tokens, config.sample.num_tokens),
                  temperature=pick(temperature, config.sample.temperature), top_k=pick(top_k, config.sample.top_k),
                  seed=pick(seed, config.seed))
