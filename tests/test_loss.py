import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from lm import loss


def test_cross_entropy_matches_numpy_and_honours_weights():
  rng = np.random.default_rng(0)
  logits = rng.normal(size=(2, 3, 5)).astype(np.float32)
  targets = rng.integers(0, 5, (2, 3))
  weights = np.array([[1, 1, 0], [1, 0, 0]], np.float32)
  log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
  nll = -np.take_along_axis(log_probs, targets[..., None], -1)[..., 0]
  nats, count = loss.cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
  assert float(count) == 3.0
  assert float(nats) == pytest.approx(float((nll * weights).sum()), rel=1e-6)


@pytest.mark.parametrize('smoothing', [0.0, 0.1, 0.5])
def test_smoothed_cross_entropy_is_optax_on_smoothed_labels(smoothing):
  rng = np.random.default_rng(1)
  logits = rng.normal(size=(2, 3, 7)).astype(np.float32)
  targets = rng.integers(0, 7, (2, 3))
  weights = np.array([[1, 1, 0], [1, 0, 1]], np.float32)
  labels = optax.smooth_labels(jax.nn.one_hot(targets, 7), smoothing)
  want = (optax.softmax_cross_entropy(jnp.asarray(logits), labels) * weights).sum()
  got = loss.smoothed_cross_entropy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights), smoothing)
  assert float(got) == pytest.approx(float(want), rel=1e-5)
  if smoothing == 0:
    assert float(got) == pytest.approx(float(loss.cross_entropy(logits, targets, weights)[0]), rel=1e-6)


def test_bits_per_byte_counts_utf8_bytes_of_the_targets():
  token_bytes = jnp.array([0, 0, 1, 2, 3])  # pad, eos, 'a', 'é', '€'
  targets = jnp.array([[2, 3, 4, 1]])
  weights = jnp.array([[1.0, 1.0, 1.0, 0.0]])
  num_bytes = float(loss.target_bytes(targets, weights, token_bytes))
  assert num_bytes == 6.0
  assert loss.bits_per_byte(6 * math.log(2), num_bytes) == pytest.approx(1.0)
  assert math.isnan(loss.bits_per_byte(1.0, 0.0))


def test_token_accuracy():
  logits = jnp.array([[[0.0, 1.0], [1.0, 0.0], [1.0, 0.0]]])
  assert float(loss.token_accuracy(logits, jnp.array([[1, 1, 0]]), jnp.array([[1.0, 1.0, 0.0]]))) == 1.0
  # On those inputs argmin also gives 1.0: a numpy reference on random logits with uneven weights.
  rng = np.random.default_rng(4)
  logits = rng.normal(size=(3, 8, 7)).astype(np.float32)
  # Half the targets are the argmax, half another token: a hit rate far from both 0 and 1.
  best = logits.argmax(-1)
  targets = np.where(rng.random((3, 8)) < 0.5, best, (best + rng.integers(1, 7, (3, 8))) % 7)
  weights = rng.choice([0.0, 0.5, 1.0, 2.0], size=(3, 8)).astype(np.float32)
  want = float(((best == targets) * weights).sum())
  # The reference tells apart the bugs a loose check would miss: argmin, the misses counted, weights ignored.
  assert want != float(((logits.argmin(-1) == targets) * weights).sum())
  assert want != float(((best != targets) * weights).sum())
  assert want != float((best == targets).sum())
  got = loss.token_accuracy(jnp.asarray(logits), jnp.asarray(targets), jnp.asarray(weights))
  assert float(got) == pytest.approx(want, rel=1e-6)
