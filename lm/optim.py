"""Learning-rate schedules and the AdamW optimizer (optax chains)."""
from typing import Any

import jax
import optax

from lm import config as config_lib


def make_schedule(train_config: Any) -> optax.Schedule:
  """Linear warmup to `learning_rate`, then 'cosine' | 'constant' | 'wsd' (warmup-stable-decay) until num_steps."""
  t = train_config
  peak, warmup, total = t.learning_rate, t.warmup_steps, t.num_steps
  final = peak * t.min_lr_ratio
  rest = max(total - warmup, 1)
  decay = max(int(round(t.decay_fraction * total)), 1)
  after_warmup = {  # train.schedule -> what follows the warmup.
      'cosine': lambda: optax.cosine_decay_schedule(peak, rest, alpha=t.min_lr_ratio),
      'constant': lambda: optax.constant_schedule(peak),
      'wsd': lambda: optax.join_schedules(
          [optax.constant_schedule(peak), optax.linear_schedule(peak, final, decay)], [max(rest - decay, 0)]),
  }
  config_lib.check(t.schedule in after_warmup, 'train.schedule', t.schedule, f'must be one of {tuple(after_warmup)}')
  return optax.join_schedules([optax.linear_schedule(0.0, peak, warmup), after_warmup[t.schedule]()], [warmup])


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
