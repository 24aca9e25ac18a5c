"""Autoregressive sampling over a `logits_fn` callback (the sampler never sees the model).

This first version recomputes the window each step; a KV cache and beam search replace it later.
"""
from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array


def choose_token(logits: Array, rng: Array, temperature: float, top_k: int) -> Array:
  """Picks a token from float32 `logits[V]`: greedy at temperature 0, else softmax(logits / T) over the top k."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1)
  logits = logits.astype(jnp.float32) / temperature
  if top_k:
    kth = jax.lax.top_k(logits, top_k)[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  return jax.random.categorical(rng, logits, axis=-1)


def sample(logits_fn: Callable[[Array], Array], prompt: np.ndarray, *, num_tokens: int, window: int,
           rng: Array, temperature: float = 1.0, top_k: int = 0, stop_id: int | None = None) -> np.ndarray:
  """Extends `prompt[n]` by up to `num_tokens` tokens; returns only the new ones.

  `logits_fn(tokens[1, window]) -> logits[1, window, V]` must be causal: the logits at position i depend on
  tokens 0..i only, so the right-padding of a short window does not change them. The context is the last
  `window` tokens. Generation stops early at `stop_id`.
  """
  if temperature < 0:
    raise ValueError(f'temperature={temperature} must be >= 0')

  @jax.jit
  def next_token(tokens, last, key):
    return choose_token(logits_fn(tokens)[0, last], key, temperature, top_k)

  context = [int(t) for t in prompt]
  new = []
  for i in range(num_tokens):
    recent = context[-window:]
    buffer = np.zeros((1, window), np.int32)
    buffer[0, :len(recent)] = recent
    token = int(next_token(buffer, len(recent) - 1, jax.random.fold_in(rng, i)))
    if token == stop_id:
      break
    context.append(token)
    new.append(token)
  return np.asarray(new, np.int32)
