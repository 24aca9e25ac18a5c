"""Learning-rate schedules and the AdamW optimizer (optax chains)."""
from typing import Any

import jax
import optax


def make_schedule(train_config: Any) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then 'cosine' | 'constant' | 'wsd' (warmup-stable-decay) until num_steps."""
  t = train_config
  peak, warmup, total = t.learning_rate, t.warmup_steps, t.num_steps
  final = peak * t.min_lr_ratio
  warmup_fn = optax.linear_schedule(0.0, peak, warmup)
  rest = max(total - warmup, 1)
  if t.schedule == 'cosine':
    main = optax.cosine_decay_schedule(peak, rest, alpha=t.min_lr_ratio)
  elif t.schedule == 'constant':
    main = optax.constant_schedule(peak)
  elif t.schedule == 'wsd':
    decay = max(int(round(t.decay_fraction * total)), 1)
    main = optax.join_schedules(
        [optax.constant_schedule(peak), optax.linear_schedule(peak, final, decay)], [max(rest - decay, 0)])
  else:
    raise ValueError(f'train.schedule={t.schedule!r}: expected "cosine", "constant" or "wsd"')
  return optax.join_schedules([warmup_fn, main], [warmup])


def decay_mask(params: Any) -> Any:
  """True for matmul kernels (2-D or more, not embeddings); norms, biases and embeddings are not decayed."""
  def is_decayed(path, leaf):
    name = str(getattr(path[-1], 'key', path[-1]))
    return leaf.ndim >= 2 and 'embedding' not in name
  return jax.tree_util.tree_map_with_path(is_decayed, params)


def make_optimizer(train_config: Any) -> optax.GradientTransformation:
  """Global-norm clipping, then AdamW on the schedule, with weight decay masked as `decay_mask` says."""
  t = train_config
  adamw = optax.adamw(make_schedule(t), b1=t.beta1, b2=t.beta2, eps=t.eps, weight_decay=t.weight_decay,
                      mask=decay_mask)
  if t.grad_clip:
    return optax.chain(optax.clip_by_global_norm(t.grad_clip), adamw)
  return adamw
