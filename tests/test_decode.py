import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import decode

VOCAB = 7


def bigram_logits_fn(tokens):
  """A causal toy model: the next token after t is (t + 1) % VOCAB with a large margin."""
  return 10.0 * jax.nn.one_hot((tokens + 1) % VOCAB, VOCAB)


def test_greedy_follows_the_argmax_and_slides_the_window():
  new = decode.sample(bigram_logits_fn, np.array([3]), num_tokens=12, window=4, rng=jax.random.PRNGKey(0),
                      temperature=0.0)
  np.testing.assert_array_equal(new, [(3 + i) % VOCAB for i in range(1, 13)])


def test_stops_at_the_stop_id():
  new = decode.sample(bigram_logits_fn, np.array([3]), num_tokens=12, window=4, rng=jax.random.PRNGKey(0),
                      temperature=0.0, stop_id=6)
  np.testing.assert_array_equal(new, [4, 5])


def test_top_k_never_samples_outside_the_k_most_likely():
  logits = jnp.log(jnp.array([0.05, 0.3, 0.1, 0.25, 0.3]))
  picks = {int(decode.choose_token(logits, jax.random.PRNGKey(i), 1.0, 2)) for i in range(200)}
  assert picks == {1, 4}


def test_temperature_sampling_covers_the_distribution():
  logits = jnp.zeros(4)
  picks = [int(decode.choose_token(logits, jax.random.PRNGKey(i), 1.0, 0)) for i in range(200)]
  assert set(picks) == {0, 1, 2, 3}


def test_negative_temperature_is_an_error():
  with pytest.raises(ValueError, match='temperature=-1'):
    decode.sample(bigram_logits_fn, np.array([1]), num_tokens=1, window=4, rng=jax.random.PRNGKey(0),
                  temperature=-1.0)
