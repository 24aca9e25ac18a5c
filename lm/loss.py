"""Token-level losses and metrics; everything in float32 whatever the compute dtype."""
import math

import jax
import jax.numpy as jnp

Array = jax.Array


def _float32_logits(logits: Array, targets: Array) -> tuple[Array, Array, Array]:
  """(float32 logits, log partition function, target logit), each but the first [B, L]."""
  logits = logits.astype(jnp.float32)
  target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]
  return logits, jax.nn.logsumexp(logits, axis=-1), target_logit


def cross_entropy(logits: Array, targets: Array, weights: Array) -> tuple[Array, Array]:
  """Summed weighted negative log-likelihood (nats) and the summed weight. logits [B, L, V], targets [B, L]."""
  _, log_z, target_logit = _float32_logits(logits, targets)
  return jnp.sum((log_z - target_logit) * weights), jnp.sum(weights)


def smoothed_cross_entropy(logits: Array, targets: Array, weights: Array, label_smoothing: float) -> Array:
  """Summed weighted cross entropy against label-smoothed targets, (1 - s) one-hot + s / V as optax.smooth_labels
  makes them: the NLL plus s * (target logit - mean logit). s = 0 is cross_entropy's NLL. A training objective
  only: the NLL stays the reported loss, so bits per byte stay comparable across runs."""
  logits, log_z, target_logit = _float32_logits(logits, targets)
  per_token = log_z - target_logit + label_smoothing * (target_logit - jnp.mean(logits, axis=-1))
  return jnp.sum(per_token * weights)


def token_accuracy(logits: Array, targets: Array, weights: Array) -> Array:
  """Summed weight of the positions whose argmax is the target."""
  return jnp.sum((jnp.argmax(logits, axis=-1) == targets) * weights)


def target_bytes(targets: Array, weights: Array, token_bytes: Array) -> Array:
  """UTF-8 bytes covered by the weighted targets; `token_bytes[V]` comes from the tokenizer."""
  return jnp.sum(token_bytes[targets] * weights)


def bits_per_byte(summed_nats: float, num_bytes: float) -> float:
  """Summed nats / (ln 2 * UTF-8 bytes): comparable across tokenizers. NaN when there are no bytes."""
  return summed_nats / (math.log(2) * num_bytes) if num_bytes else float('nan')
