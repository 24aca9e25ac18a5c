"""Training: `TrainState`, pure `train_step` / `eval_step`, and `train_and_evaluate(config, workdir)`."""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import math
import os
import signal
import time
from typing import Any, Iterable

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
from lm.data import pipeline

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  step: Array  # int32 scalar: optimizer steps taken.
  params: Any
  opt_state: Any
  rng: Array  # Base key; step s uses fold_in(rng, s), so resuming replays the same randomness.


class NonFiniteLossError(FloatingPointError):
  pass


# ----------------------------------------------------------------------------------------------------------
# Pure steps.


def init_state(model: model_lib.DecoderLM, tx: optax.GradientTransformation, rng: Array,
               seq_len: int, *, boxed: bool = False) -> TrainState:
  """A fresh state. `boxed=True` keeps flax's logical-axis metadata on params and optimizer state, which
  `parallel.shardings_from_logical` reads; training uses plain arrays."""
  params_rng, state_rng = jax.random.split(rng)
  params = model.init(params_rng, jnp.zeros((1, seq_len), jnp.int32))['params']
  if not boxed:
    params = nn.meta.unbox(params)
  return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params), rng=state_rng)


def _forward(model, params, batch, rng=None):
  deterministic = rng is None
  return model.apply({'params': params}, batch['decoder_input_tokens'], batch['decoder_segment_ids'],
                     batch['decoder_positions'], deterministic=deterministic,
                     rngs=None if deterministic else {'dropout': rng})


def train_step(state: TrainState, batch: dict[str, Array], *, model: model_lib.DecoderLM,
               tx: optax.GradientTransformation, token_bytes: Array, grad_accum_steps: int = 1,
               axis_name: str | None = None) -> tuple[TrainState, dict[str, Array]]:
  """One optimizer step on the mean token loss of `batch`. Metrics are sums plus norms, all float32.

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
      logits = _forward(model, params, micro, micro_rng)
      nats, count = loss_lib.cross_entropy(logits, targets, weights)
      return nats / total, (nats, count)

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


def eval_step(params: Any, batch: dict[str, Array], *, model: model_lib.DecoderLM,
              token_bytes: Array, axis_name: str | None = None) -> dict[str, Array]:
  """Summed nats, target tokens, bytes and correct predictions of one batch (padding has weight 0)."""
  logits = _forward(model, params, batch)
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
  checks = [
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
      (t.schedule in ('cosine', 'constant', 'wsd'), 'train.schedule', t.schedule,
       'must be "cosine", "constant" or "wsd"'),
      (t.keep_checkpoints > 0, 'train.keep_checkpoints', t.keep_checkpoints, 'must be positive'),
      (d.seq_len > 0, 'data.seq_len', d.seq_len, 'must be positive'),
      (d.num_workers >= 0, 'data.num_workers', d.num_workers, 'must be >= 0'),
      (not (d.pack and config.model.attention == 'cudnn'), 'data.pack', d.pack,
       "cannot be combined with model.attention='cudnn' (its lengths mask holds one document per row)"),
  ]
  checks += [
      (t.schedule != 'wsd' or t.warmup_steps + round(t.decay_fraction * t.num_steps) <= t.num_steps,
       'train.decay_fraction', t.decay_fraction,
       f'leaves no room after {t.warmup_steps} warmup steps in {t.num_steps} steps (schedule wsd)'),
      (config.model.max_len == 0 or config.model.max_len >= d.seq_len, 'model.max_len', config.model.max_len,
       f'must be 0 or >= data.seq_len ({d.seq_len})'),
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
  model_lib.ModelConfig.from_config(config.model, vocab_size=1, max_len=d.seq_len)  # Model keys and values.


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


def build_model(config: ml_collections.ConfigDict, vocab_size: int) -> model_lib.DecoderLM:
  return model_lib.DecoderLM(model_lib.ModelConfig.from_config(
      config.model, vocab_size=vocab_size, max_len=config.data.seq_len))


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str) -> dict[str, float]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final validation metrics."""
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

  tokenizer = pipeline.get_tokenizer(config.data, workdir)
  model = build_model(config, tokenizer.vocab_size)
  tx = optim.make_optimizer(config.train)
  schedule = optim.make_schedule(config.train)
  t, seq_len = config.train, config.data.seq_len

  token_bytes = jnp.asarray(tokenizer.token_bytes, jnp.float32)
  launcher = parallel.Launcher(
      p.strategy, p.mesh_shape,
      init_fn=functools.partial(init_state, model, tx, seq_len=seq_len),
      boxed_init_fn=functools.partial(init_state, model, tx, seq_len=seq_len, boxed=True),
      step_fn=functools.partial(train_step, model=model, tx=tx, token_bytes=token_bytes,
                                grad_accum_steps=t.grad_accum_steps),
      eval_fn=functools.partial(eval_step, model=model, token_bytes=token_bytes))
  state = launcher.init(jax.random.PRNGKey(config.seed))
  train_iter = pipeline.make_train_iterator(
      config.data, tokenizer, batch_size=t.batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count())
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'), keep=t.keep_checkpoints)
  if (latest := checkpointer.latest_step()) is not None:
    state = launcher.from_checkpoint(checkpointer.restore(latest, launcher.to_checkpoint(state), train_iter))
    say(f'resumed from {checkpointer.directory} at step {latest}', flush=True)

  # Nothing is dropped silently. (The pipeline tokenizes the split up front, so counting costs little more.)
  stats = pipeline.split_stats(config.data, tokenizer, 'train')
  say(f'data: {stats.examples:,} train examples, {stats.target_tokens:,} target tokens; '
      f'{stats.truncated_tokens:,} tokens truncated, {stats.dropped_examples:,} examples dropped', flush=True)
  flops_per_token = flops_lib.flops_per_token(model.config, seq_len)
  peak = flops_lib.peak_flops(model.config.dtype) * jax.device_count()
  tokens_per_step = t.batch_size * seq_len
  num_params = flops_lib.count_params(launcher.to_checkpoint(state).params)
  say(f'model: {num_params:,} params, {flops_per_token / 1e6:.1f} MFLOPs/token; '
      f'{t.num_steps} steps of {tokens_per_step:,} tokens; workdir {workdir}', flush=True)
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
    tokens_per_s = window['steps'] * tokens_per_step / elapsed
    metrics = {**summarize(window), 'learning_rate': float(schedule(s - 1)), 'grad_norm': grad_norm,
               'tokens_seen': s * tokens_per_step, 'flops_seen': s * tokens_per_step * flops_per_token,
               'wall_s': time.perf_counter() - run_start, 'tokens_per_s': tokens_per_s,
               'mfu': tokens_per_s * flops_per_token / peak}
    log.write(s, 'train', metrics)
    eta = (t.num_steps - s) * elapsed / window['steps']
    say(f'step {s:6d}/{t.num_steps}  loss {metrics["loss"]:.4f}  bpb {metrics["bits_per_byte"]:.3f}  '
          f'lr {metrics["learning_rate"]:.2e}  {tokens_per_s:,.0f} tok/s  mfu {metrics["mfu"]:.1%}  '
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
  prompt = config.sample.prompt
  try:
    tokenizer.encode(prompt)
  except ValueError as e:  # E.g. the default 'ROMEO:' on a user corpus without capitals.
    say(f'sample.prompt={prompt!r} cannot be encoded ({e}); sampling from an empty prompt instead')
    prompt = ''
  text = generate(model, launcher.to_checkpoint(state).params, tokenizer, prompt, num_tokens=config.sample.num_tokens,
                  temperature=config.sample.temperature, top_k=config.sample.top_k, seed=config.seed)
  with open(os.path.join(workdir, 'samples.txt'), 'a') as f:  # Single process here.
    f.write(f'--- step {step}, prompt {prompt!r}\n{text}\n')
  say(f'--- sample (step {step}) ---\n{text}', flush=True)
  return final


def _accumulate(window: dict[str, float], host: dict[str, float]) -> None:
  for key in ('nats', 'tokens', 'bytes'):
    window[key] += host[key]
  window['steps'] += 1


def generate(model: model_lib.DecoderLM, params: Any, tokenizer, prompt: str, *, num_tokens: int,
             temperature: float, top_k: int = 0, seed: int = 0) -> str:
  """The prompt followed by a sampled continuation. An empty prompt starts a new document (after an eos)."""
  prompt_ids = tokenizer.encode(prompt) if prompt else np.array([tokenizer.eos_id], np.int32)
  new = decode.sample(lambda tokens: model.apply({'params': params}, tokens), prompt_ids,
                      num_tokens=num_tokens, window=model.config.max_len, rng=jax.random.PRNGKey(seed),
                      temperature=temperature, top_k=top_k, stop_id=tokenizer.eos_id)
  return prompt + tokenizer.decode(new)


def sample_from_workdir(workdir: str, prompt: str | None = None, *, num_tokens: int | None = None,
                        temperature: float | None = None, top_k: int | None = None, seed: int | None = None) -> str:
  """Samples from the latest checkpoint of a run directory, with the run's own config and tokenizer.

  Arguments left as None take the run's `config.sample` values (and `config.seed`).
  """
  config_path = os.path.join(workdir, 'config.json')
  if not os.path.exists(config_path):
    raise FileNotFoundError(f'{config_path} not found: is {workdir} a run directory made by `./run.sh train`?')
  with open(config_path) as f:
    config = ml_collections.ConfigDict(json.load(f))
  tokenizer = pipeline.get_tokenizer(config.data, workdir)
  model = build_model(config, tokenizer.vocab_size)
  tx = optim.make_optimizer(config.train)
  target = jax.eval_shape(functools.partial(init_state, model, tx, seq_len=config.data.seq_len),
                          jax.random.PRNGKey(0))
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, 'checkpoints'),
                                             keep=config.train.keep_checkpoints, read_only=True)
  step = checkpointer.latest_step()
  if step is None:
    raise FileNotFoundError(f'no checkpoint in {checkpointer.directory}; train first')
  state = checkpointer.restore(step, target)
  checkpointer.close()
  pick = lambda value, default: default if value is None else value
  return generate(model, state.params, tokenizer, pick(prompt, config.sample.prompt),
                  num_tokens=pick(num_tokens, config.sample.num_tokens),
                  temperature=pick(temperature, config.sample.temperature), top_k=pick(top_k, config.sample.top_k),
                  seed=pick(seed, config.seed))
