"""The pure steps: `TrainState`, `init_state`, `train_step`, `eval_step`, and the metric sums they return.

No I/O and no globals: the loop (`lm/train.py`), the evaluation (`lm/evaluate.py`), the benchmarks and the
tests compile them where they use them, on one device, under pmap or over a mesh (`lm/parallel.py`).
"""
from __future__ import annotations

from typing import Any, Callable, Iterable

import flax
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from lm import errors
from lm import loss as loss_lib

Array = jax.Array


@flax.struct.dataclass
class TrainState:
  step: Array  # int32 scalar: optimizer steps taken.
  params: Any
  opt_state: Any
  rng: Array  # Base key; step s uses fold_in(rng, s), so resuming replays the same randomness.



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


def evaluate(eval_batch: Callable[[dict[str, np.ndarray]], dict[str, Array]],
             batches: Iterable[dict[str, np.ndarray]]) -> dict[str, float]:
  """`summarize` of the sums that `eval_batch` (a compiled `eval_step`) returns over all `batches`."""
  totals: dict[str, float] = {}
  for batch in batches:
    for key, value in jax.device_get(eval_batch(batch)).items():
      totals[key] = totals.get(key, 0.0) + float(value)
  if not totals:
    raise errors.InputError('the evaluation split produced no batches')
  return summarize(totals)
