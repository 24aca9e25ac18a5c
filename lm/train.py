"""The training loop: `setup` builds a `Run` once, `train_and_evaluate(config, workdir)` runs it.

One loop trains both architectures of `lm/model.py`: the decoder-only LM on `data.task='lm'` rows of
`data.seq_len` tokens, the encoder-decoder on 'seq2seq' / 'span_corruption' rows of `data.max_input_len` encoder
and `data.max_target_len` decoder tokens. The loop resumes from the run's newest checkpoint that restores (one
that cannot be read is moved aside); `config.init_from` starts a fine-tuning run from another run's params. Its
periodic actions (log, save, validate, sample) are the small functions below it.

What a run resolves once, at its first start (dtype, size, steps for a time budget), is lm/first_start.py's.
Past ~450 lines: the loop and its periodic actions read one Run and change together.
"""
from __future__ import annotations

import contextlib
import dataclasses
import functools
import itertools
import math
import os
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from lm import checkpoint as checkpoint_lib
from lm import config as config_lib
from lm import errors
from lm import first_start
from lm import flops as flops_lib
from lm import generate
from lm import hardware
from lm import optim
from lm import parallel
from lm import rundir
from lm import step as step_lib
from lm import stopping
from lm.data import datasets
from lm.data import pipeline
from lm.data import tasks
from lm.data import tokenizer_cache

# A generation eval at validation points: hook(run, step, params), e.g. lm/evaluate.py's `generation_eval`.
EvalHook = Callable[['Run', int, Any], None]


@dataclasses.dataclass
class Run:
  """What a training run builds once: the model and its data, the compiled steps, the run directory's writers."""
  config: ml_collections.ConfigDict
  workdir: str
  model: Any
  tokenizer: Any
  schedule: Callable[[int], float]
  launcher: parallel.Launcher
  train_iter: Any
  checkpointer: checkpoint_lib.Checkpointer
  log: rundir.MetricsLog | rundir.NullLog
  start_step: int
  tokens_per_step: int
  flops_per_step: float
  peak_flops: float
  say: Callable[..., None]
  lock: rundir.WorkdirLock | None = None  # Process 0's; the job's other processes hold none.
  start_time: float = dataclasses.field(default_factory=time.perf_counter)

  def params(self, state: step_lib.TrainState) -> Any:
    """The live params, one copy. Read them and keep no reference: the next step donates their buffers."""
    return self.launcher.to_checkpoint(state).params

  def close(self) -> None:
    try:
      self.checkpointer.wait()
      self.checkpointer.close()
      self.log.close()
    finally:
      if self.lock:
        self.lock.release()  # Last: another trainer may start once this run's writes are done.


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       eval_hook: EvalHook | None = None) -> dict[str, float]:
  """Trains `config` in `workdir`, resuming from its latest checkpoint; returns the final validation metrics.

  `eval_hook`, if given, runs at every validation point after the loss pass, on every process. The first SIGTERM
  or SIGINT (`StopRequests`) stops the run after the current step, or at once in setup, validation and the
  sample; the state is saved if it was not, then `errors.Stopped` is raised. A second one exits at once.
  """
  with stopping.stop_requests() as stop:
    try:
      with stop.interruptible('setup'):  # Data preparation, tokenizer training, restoring: nothing to save yet.
        run, state = setup(config, workdir)
    except stopping.StopRequested:
      raise errors.Stopped(f'stopped in setup, {time.perf_counter() - stop.received_at:.1f}s after {stop.signal}; '
                           'no step was trained. Rerun the same command to start.') from None
    t, step, window, final = run.config.train, run.start_step, Window(), {}  # run.config: num_steps fitted.
    saved = step  # The step whose state is on disk (or, at 0, needs no saving).
    try:
      pending = None  # (step, metrics) dispatched but not yet read: keeps the device a step ahead of the host.
      while step < t.num_steps:
        state, metrics = take_step(run, window, state, first=step == run.start_step)
        step += 1
        if pending is not None:
          window.add(check_finite(run, *pending))
        pending = (step, metrics)
        # Read the stop request once: a signal landing later in this iteration is handled after the next step.
        stop_now, at_end = bool(stop), step == t.num_steps
        at_log = step % t.log_every == 0 or at_end
        at_save = step % t.checkpoint_every == 0 or at_end or stop_now or step in t.save_steps
        at_eval = (step % t.eval_every == 0 or at_end) and not stop_now
        if not (at_log or at_save or at_eval):
          continue
        window.add(host := check_finite(run, *pending))  # Step `step` is finite before it is logged or saved.
        pending = None
        if at_log:
          window.log(run, step, host['grad_norm'])
        if at_save:
          with window.timing('checkpoint'):
            run.checkpointer.save(step, run.launcher.to_checkpoint(state), run.train_iter)
          saved = step
        if at_eval and run.train_iter.streaming:  # What the batches so far held: nothing was counted up front.
          run.log.write(step, 'data', dataclasses.asdict(run.train_iter.stats))
        if at_eval:
          with window.timing('eval'), stop.interruptible('validation'):
            final = validate(run, step, state, eval_hook, max_batches=0 if at_end else t.eval_batches)
        if stop_now:
          break
      with stop.interruptible('validation'):
        if step >= t.num_steps and not final:  # Resumed a finished run: evaluate what is there; log it only if
          # its final validation never was (a signal in the last step or in that validation).
          logged = any(row['step'] == step for row in rundir.read_metrics(run.workdir, 'validation'))
          final = validate(run, step, state, None if logged else eval_hook, record=not logged)
      seconds = window.summary(run, step)
      if not stop:
        run.say(f'done: {step - run.start_step} steps in {time.perf_counter() - run.start_time:.0f}s '
                f'({seconds})', flush=True)
        with stop.interruptible('the sample'):
          write_sample(run, step, state)
    except stopping.StopRequested:  # From the handler, in validation or the sample: step `step` is finite and whole.
      if saved != step:
        run.checkpointer.save(step, run.launcher.to_checkpoint(state), run.train_iter)
        saved = step
    finally:
      run.close()  # Waits for the checkpoint writes.
  if stop:
    raise errors.Stopped(f'stopped at step {step}, {time.perf_counter() - stop.received_at:.1f}s after '
                         f'{stop.signal}; checkpoint saved at step {saved}. Rerun the same command to resume.')
  return final


def setup(config: ml_collections.ConfigDict, workdir: str) -> tuple[Run, step_lib.TrainState]:
  """Checks `config`, locks `workdir` (`lock_workdir`; `Run.close` unlocks it), then builds the run in it and its
  state: restored from the run's newest checkpoint that restores (`resume`), else with config.init_from's params,
  else fresh."""
  p = config.parallel
  parallel.initialize_distributed(p.coordinator_address, p.num_processes, p.process_id)
  validate_config(config)
  workdir = rundir.resolve(workdir)
  rundir.check_trainable(workdir)
  os.makedirs(workdir, exist_ok=True)
  lock = lock_workdir(workdir)  # Before anything reads or writes the run directory.
  try:
    return _build_run(config, workdir, lock)
  except BaseException:
    if lock:
      lock.release()
    raise


def lock_workdir(workdir: str) -> rundir.WorkdirLock | None:
  """Process 0 locks `workdir` for its whole job (the others get None: they write only checkpoint shards beside
  it); when another job holds it, every process raises `errors.WorkdirBusy`, so the whole job stops."""
  lock = busy = None
  if jax.process_index() == 0:
    try:
      lock = rundir.WorkdirLock(workdir)
    except errors.WorkdirBusy as e:
      busy = e
  if first_start.process_0s(int(busy is not None)):
    raise busy or rundir.busy_error(workdir)  # The others read the holder from the lock file.
  return lock


def _build_run(config: ml_collections.ConfigDict, workdir: str, lock: rundir.WorkdirLock | None
               ) -> tuple[Run, step_lib.TrainState]:
  """`setup`'s run and state, in the locked `workdir`."""
  t = config.train
  is_main = jax.process_index() == 0  # Only process 0 writes logs, config and samples; all save checkpoints.
  say = print if is_main else (lambda *args, **kwargs: None)
  config, dtype_source = first_start.resolve_dtype(config, workdir)
  say(f'model.dtype: {config.model.dtype} ({dtype_source})', flush=True)
  config, shape_source = first_start.resolve_size(config, workdir)
  if config.model.size:
    say(f'model.size: {config.model.size} ({shape_source})', flush=True)
  checkpointer = checkpoint_lib.Checkpointer(os.path.join(workdir, rundir.CHECKPOINT_DIR), keep=t.keep_checkpoints,
                                             keep_steps=t.save_steps)
  latest = checkpointer.latest_step()
  init_from = config.init_from and rundir.resolve(config.init_from)
  if init_from and latest is None:
    rundir.pretrained_step(init_from)  # Fails before any work if it has no checkpoint.
    rundir.copy_tokenizer(init_from, workdir, config.data)  # Its embeddings index its vocabulary.
  tokenizer = tokenizer_cache.get_tokenizer(config.data, workdir)
  model = rundir.build_model(config, tokenizer.vocab_size)
  launcher = make_launcher(config, model, tokenizer)
  train_iter = pipeline.make_train_iterator(
      config.data, tokenizer, batch_size=t.batch_size // jax.process_count(), seed=config.seed,
      process_index=jax.process_index(), process_count=jax.process_count())
  steps_source = 'set by the config'
  if t.time_budget_s > 0:
    config, steps_source = first_start.fit_steps_to_budget(config, workdir, launcher, train_iter, fresh=latest is None)
    say(f'train.num_steps: {config.train.num_steps} ({steps_source})', flush=True)
    launcher = make_launcher(config, model, tokenizer)  # Its schedule ends at the fitted step.
  state = launcher.init(jax.random.PRNGKey(config.seed))
  if latest is not None or checkpointer.moved_aside():
    state, latest = resume(checkpointer, launcher, state, train_iter, t.restart_if_unrestorable, say)
  if is_main:  # After the restore: a config whose model the checkpoint does not fit leaves the run's own intact.
    rundir.write_config(workdir, config)
  if latest is not None:
    say(f'resumed from {checkpointer.directory} at step {latest}', flush=True)
    if init_from:
      say(f'init_from={config.init_from!r} ignored: this run resumes from its own checkpoint', flush=True)
  elif init_from:
    state, pretrained_step = with_pretrained_params(launcher, state, init_from)
    say(f'params from {init_from} step {pretrained_step} (init_from); fresh optimizer, step 0', flush=True)
  start_step = latest or 0
  log = rundir.MetricsLog(workdir, start_step=start_step) if is_main else rundir.NullLog()
  run = Run(config, workdir, model, tokenizer, optim.make_schedule(config.train), launcher, train_iter,
            checkpointer, log, start_step, *_speed_accounting(config, model), say, lock=lock)
  describe(run, state)
  log.write(start_step, 'setup', {  # What this start resolved, and from what.
      'device': hardware.device_name(), 'peak_flops': run.peak_flops, 'dtype': config.model.dtype,
      'dtype_source': dtype_source, 'num_steps': config.train.num_steps, 'num_steps_source': steps_source,
      'params': flops_lib.count_params(run.params(state)),
      'non_embedding_params': flops_lib.param_counts(model.config).non_embedding})  # Kaplan's N: scaling's x.
  return run, state


def resume(checkpointer: checkpoint_lib.Checkpointer, launcher: parallel.Launcher, state: step_lib.TrainState,
           train_iter: Any, restart_if_unrestorable: bool, say: Callable[..., None]
           ) -> tuple[step_lib.TrainState, int | None]:
  """(state, step) of the newest checkpoint that restores, moving aside those that cannot be read. If none is
  left (this start or an earlier one moved them all aside), raises `errors.CheckpointError`, or with
  `restart_if_unrestorable` returns (`state`, None): a fresh start, the data iterator at its start too."""
  data_start = train_iter.get_state()
  restored, step = checkpointer.restore_newest(launcher.to_checkpoint(state), train_iter,
                                               warn=lambda message: say(message, flush=True))
  if step is not None:
    return launcher.from_checkpoint(restored), step
  moved = ', '.join(checkpointer.moved_aside())
  if not restart_if_unrestorable:
    raise errors.CheckpointError(
        f'no checkpoint in {checkpointer.directory} can be restored; moved aside, never deleted: {moved}. To start '
        'again from step 0, set --config.train.restart_if_unrestorable=True; to resume from one of them, move it '
        f'back to {checkpointer.directory}/<step> (after repairing it).')
  say(f'warning: no checkpoint in {checkpointer.directory} can be restored (moved aside: {moved}); starting again '
      'from step 0 (train.restart_if_unrestorable=True)', flush=True)
  train_iter.set_state(data_start)  # A failed restore may have moved it.
  return state, None


def make_launcher(config: ml_collections.ConfigDict, model: Any, tokenizer: Any) -> parallel.Launcher:
  """The pure steps of `lm/step.py` compiled under config.parallel's strategy."""
  t, p = config.train, config.parallel
  tx = optim.make_optimizer(t)
  init = functools.partial(step_lib.init_state, model, tx, **_state_lengths(config))
  token_bytes = jnp.asarray(tokenizer.token_bytes, jnp.float32)
  return parallel.Launcher(
      p.strategy, p.mesh_shape, init_fn=init, boxed_init_fn=functools.partial(init, boxed=True),
      step_fn=functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=token_bytes,
                                grad_accum_steps=t.grad_accum_steps, label_smoothing=t.label_smoothing),
      eval_fn=functools.partial(step_lib.eval_step, model=model, token_bytes=token_bytes))


def _state_lengths(config: ml_collections.ConfigDict) -> dict[str, int]:
  lengths = tasks.row_lengths(config.data)
  return {'seq_len': lengths.decoder, 'input_len': lengths.encoder}


def _speed_accounting(config: ml_collections.ConfigDict, model: Any) -> tuple[int, float, float]:
  """(tokens per step, model FLOPs per step, peak FLOP/s of all devices). Model FLOPs of a row (encoder and
  decoder) by PaLM's accounting; tokens are row positions on both sides."""
  lengths, batch_size = tasks.row_lengths(config.data), config.train.batch_size
  flops = batch_size * flops_lib.flops_per_row(model.config, target_len=lengths.decoder, input_len=lengths.encoder)
  return batch_size * sum(lengths), flops, flops_lib.peak_flops(model.config.dtype) * jax.device_count()


def describe(run: Run, state: step_lib.TrainState) -> None:
  """Prints what the run trains on (nothing is dropped silently) and logs the train split's token accounting."""
  config, t = run.config, run.config.train
  stats = run.train_iter.stats  # Counted as the pipeline tokenized the split; as batches are drawn when streaming.
  if run.train_iter.streaming:
    run.say('data: train records streamed (data.streaming): counted as batches are drawn, logged at each eval',
            flush=True)
  else:
    run.say(f'data: {stats.examples:,} train examples, {stats.target_tokens:,} target tokens; '
            f'{stats.truncated_tokens:,} tokens truncated, {stats.dropped_examples:,} examples dropped', flush=True)
  params = flops_lib.count_param_tree(run.params(state))
  run.say(f'model: {config.model.architecture}, {params.total:,} params ({params.non_embedding:,} non-embedding), '
          f'{run.flops_per_step / run.tokens_per_step / 1e6:.1f} MFLOPs/token; {t.num_steps} steps of '
          f'{run.tokens_per_step:,} tokens; workdir {run.workdir}', flush=True)
  if not run.train_iter.streaming:  # Once per run; streaming: at each eval.
    run.log.write(run.start_step, 'data', dataclasses.asdict(stats))


def validate_config(config: ml_collections.ConfigDict) -> None:
  """`config.validate` (on the model shape that model.size fills in), then what depends on the devices: the mesh
  fits them, and the batches divide."""
  config_lib.validate(first_start.resolve_size(config)[0])
  t, p = config.train, config.parallel
  if p.strategy == 'mesh':
    mesh = parallel.make_mesh(p.mesh_shape)  # Raises on a shape that does not fit the devices.
    shards, what = mesh.shape['data'] * mesh.shape['fsdp'], 'data x fsdp mesh axes'
  else:
    shards, what = (jax.device_count() if p.strategy == 'pmap' else 1), 'device count'
  config_lib.check(t.batch_size % (shards * t.grad_accum_steps) == 0, 'train.batch_size', t.batch_size,
                   f'must be divisible by the {what} ({shards}) times train.grad_accum_steps ({t.grad_accum_steps})')
  config_lib.check(t.eval_batch_size % shards == 0, 'train.eval_batch_size', t.eval_batch_size,
                   f'must be divisible by the {what} ({shards})')


def with_pretrained_params(launcher: parallel.Launcher, state: step_lib.TrainState, run_dir: str
                           ) -> tuple[step_lib.TrainState, int]:
  """(`state` (fresh) with the params of `run_dir`'s latest checkpoint, placed as `state`'s own; that step)."""
  fresh = launcher.to_checkpoint(state)
  saved, step = rundir.pretrained_params(run_dir)
  rundir.check_same_params(fresh.params, saved, f'init_from={run_dir!r} step {step}')
  params = jax.tree.map(lambda old, new: jax.device_put(np.asarray(new, old.dtype), old.sharding),
                        fresh.params, saved)
  return launcher.from_checkpoint(fresh.replace(params=params)), step


# ----------------------------------------------------------------------------------------------------------
# The loop's periodic actions.


def check_finite(run: Run, step: int, metrics: dict[str, jax.Array]) -> dict[str, float]:
  """Reads `step`'s metrics to the host; stops the run, keeping the checkpoints, if they are not finite."""
  host = {k: float(v) for k, v in jax.device_get(metrics).items()}
  if not (math.isfinite(host['loss']) and math.isfinite(host['grad_norm'])):
    run.checkpointer.wait()
    latest = run.checkpointer.latest_step()
    kept = (f'step {latest} kept in {run.checkpointer.directory}; lower train.learning_rate or raise '
            'train.warmup_steps, then rerun to resume from it' if latest is not None else
            f'no checkpoint saved yet (train.checkpoint_every={run.config.train.checkpoint_every}); lower '
            'train.learning_rate or raise train.warmup_steps, then rerun to start again')
    raise errors.NonFiniteLoss(f'loss={host["loss"]} grad_norm={host["grad_norm"]} at step {step}: training '
                               f'stopped without saving it; {kept}.')
  return host


def take_step(run: Run, window: 'Window', state: step_lib.TrainState, *, first: bool):
  """Dispatches one train step on the next batch. The first call compiles the step: its time is compile time."""
  with window.timing('data_wait', train=True):  # Part of training: a slow pipeline slows it.
    batch = next(run.train_iter)
  with window.timing('compile') if first else contextlib.nullcontext():
    return run.launcher.step(state, batch)


class Window:
  """The train metrics summed since the last log line and the training time they took, which leaves out the
  run's other work: compiling, evaluating, saving (`timing`), so that the logged speed is the training's."""
  OTHER_WORK = ('compile', 'eval', 'checkpoint')

  def __init__(self):
    self.seconds = dict.fromkeys(('train', 'data_wait', *self.OTHER_WORK), 0.0)  # The run's, in all.
    self._start_window()

  def _start_window(self):
    self.sums = {'nats': 0.0, 'tokens': 0.0, 'bytes': 0.0}
    self.steps, self.start, self.other_work = 0, time.perf_counter(), 0.0

  @contextlib.contextmanager
  def timing(self, name: str, *, train: bool = False):
    """Adds the block's seconds to `seconds[name]`; unless `train`, they are not training time."""
    start = time.perf_counter()
    try:
      yield
    finally:
      elapsed = time.perf_counter() - start
      self.seconds[name] += elapsed
      if not train:
        self.other_work += elapsed

  def add(self, host: dict[str, float]) -> None:
    for key in self.sums:
      self.sums[key] += host[key]
    self.steps += 1

  def log(self, run: Run, step: int, grad_norm: float) -> None:
    """Writes and prints the window's means and speed, then starts a new window."""
    t = run.config.train
    train_s = time.perf_counter() - self.start - self.other_work
    self.seconds['train'] += train_s
    steps_per_s = self.steps / train_s
    metrics = {**step_lib.summarize(self.sums), 'learning_rate': float(run.schedule(step - 1)),
               'grad_norm': grad_norm, 'tokens_seen': step * run.tokens_per_step,
               'flops_seen': step * run.flops_per_step, 'wall_s': time.perf_counter() - run.start_time,
               'tokens_per_s': steps_per_s * run.tokens_per_step, 'mfu': steps_per_s * run.flops_per_step /
               run.peak_flops, **{f'{k}_s': v for k, v in self.seconds.items()}}
    run.log.write(step, 'train', metrics)
    run.say(f'step {step:6d}/{t.num_steps}  loss {metrics["loss"]:.4f}  bpb {metrics["bits_per_byte"]:.3f}  '
            f'lr {metrics["learning_rate"]:.2e}  {metrics["tokens_per_s"]:,.0f} tok/s  mfu {metrics["mfu"]:.1%}  '
            f'eta {(t.num_steps - step) / steps_per_s:.0f}s', flush=True)
    self._start_window()

  def summary(self, run: Run, step: int) -> str:
    """Logs where the run's time went (split 'summary') and returns it as a line."""
    seconds = {f'{k}_s': v for k, v in self.seconds.items()}
    run.log.write(step, 'summary', {**seconds, 'wall_s': time.perf_counter() - run.start_time})
    return ', '.join(f'{k} {v:.1f}s' for k, v in self.seconds.items())


def validate(run: Run, step: int, state: step_lib.TrainState, eval_hook: EvalHook | None, *,
             record: bool = True, max_batches: int = 0) -> dict[str, float]:
  """The validation loss pass (logged when `record`; the first `max_batches` batches, if > 0), then `eval_hook`."""
  batches = pipeline.make_eval_batches(run.config.data, run.tokenizer, 'validation',
                                       batch_size=run.config.train.eval_batch_size)
  if max_batches:
    batches = itertools.islice(batches, max_batches)
  metrics = step_lib.evaluate(functools.partial(run.launcher.evaluate, state), batches)
  if record:
    run.log.write(step, 'validation', {**metrics, 'tokens_seen': step * run.tokens_per_step,
                                       'wall_s': time.perf_counter() - run.start_time, 'eval_batches': max_batches})
  run.say(f'step {step:6d}  validation loss {metrics["loss"]:.4f}  bits/byte {metrics["bits_per_byte"]:.3f}',
          flush=True)
  if record and eval_hook is not None:
    eval_hook(run, step, run.params(state))
  return metrics


def write_sample(run: Run, step: int, state: step_lib.TrainState) -> None:
  """Prints the end-of-run sample and appends it to samples.txt: a continuation of decode.sample_prompt, or an
  encoder-decoder's greedy predictions for the first validation inputs."""
  config = run.config
  if jax.process_count() > 1:
    run.say('multi-host run: sample with `./run.sh sample --workdir=...` from one process')
    return
  if not config.decode.sample_num_tokens:
    return
  params = run.params(state)
  if config.model.architecture == 'encoder_decoder':
    pairs = datasets.split_pairs(config.data, 'validation')[:generate.NUM_SAMPLE_EXAMPLES]
    text = generate.sample(run.model, params, run.tokenizer, config, pairs=pairs)
    heading = f'--- step {step}, validation input -> prediction (target), greedy'
  else:
    prompt = config.decode.sample_prompt
    try:
      run.tokenizer.encode(prompt)
    except ValueError as e:  # E.g. the default 'ROMEO:' on a user corpus without capitals.
      run.say(f'decode.sample_prompt={prompt!r} cannot be encoded ({e}); sampling from an empty prompt instead')
      prompt = ''
    text = generate.sample(run.model, params, run.tokenizer, config, prompt=prompt)
    heading = f'--- step {step}, prompt {prompt!r}'
  rundir.append_sample(run.workdir, heading, text)
  run.say(f'--- sample (step {step}) ---\n{text}', flush=True)
