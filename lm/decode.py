"""Autoregressive decoding over a `logits_fn` callback: the decoders never see the model, only its cache.

The model side provides

  logits_fn(tokens: int32[N], index: int32[], cache) -> (logits: float32[N, V], new_cache)

which feeds `tokens` (one per row) at position `index` and returns the logits for position `index + 1`, the new cache
now holding position `index` too. All rows share one `index`. `cache` is any pytree whose leaves all have the row dim
first (KV caches [N, max_len, H, K], encoder outputs [N, L, D], masks [N, L]); the decoders never look inside it,
except that beam search repeats every leaf along dim 0 (`jnp.repeat(x, num_beams, axis=0)`: beam-major within a
row) and gathers along dim 0 to reorder beams. `new_cache` must keep the structure, shapes and dtypes of `cache`
(it is a `lax.while_loop` carry). Both decoders trace under `jax.jit`; their Python arguments are static.

State that no step changes and every beam of a row shares (an encoder's cross-attention keys/values) belongs in
the `logits_fn` closure, not the cache, so beam search does not reorder it every step (for T5-small's shape that
gather took half of the search's time: 4.3 s per `./run.sh bench decode` batch against 2.0 s). Its rows must then
match the beams': `expand_beams(state, num_beams)`.
"""
from __future__ import annotations

from typing import Any, Callable

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Cache = Any  # A pytree of arrays, each with the row dim first.
LogitsFn = Callable[[Array, Array, Cache], tuple[Array, Cache]]

# Finite, so that masked scores can be added, divided and compared without making NaN (as t5x does).
NEG_INF = -1.0e7
# A nucleus whose mass reaches top_p up to float32 rounding of the cumulative sum stops there.
_TOP_P_SLACK = 1e-6


def _check(ok: bool, name: str, value: Any, requirement: str) -> None:
  if not ok:
    raise ValueError(f'{name}={value!r} {requirement}')


def _check_sampling(temperature: float, top_k: int, top_p: float) -> None:
  _check(temperature >= 0, 'temperature', temperature, 'must be >= 0 (0 is greedy)')
  _check(top_k >= 0, 'top_k', top_k, 'must be >= 0 (0 disables)')
  _check(0 < top_p <= 1, 'top_p', top_p, 'must be in (0, 1] (1 disables)')


def filter_logits(logits: Array, top_k: int = 0, top_p: float = 1.0) -> Array:
  """Sets to -inf the logits of `logits[..., V]` outside the top k, then outside the top-p nucleus.

  top_k keeps the k largest (and any tied with the k-th). top_p keeps the smallest set of most likely tokens whose
  probability (of the distribution left by top_k) reaches top_p, so the most likely token is always kept, and a set
  that reaches p exactly stops there. Apply the temperature first: the nucleus is that of the tempered distribution.
  """
  logits = logits.astype(jnp.float32)
  if top_k:
    kth = lax.top_k(logits, min(top_k, logits.shape[-1]))[0][..., -1:]
    logits = jnp.where(logits < kth, -jnp.inf, logits)
  if top_p < 1.0:
    descending = -jnp.sort(-logits, axis=-1)
    probs = jax.nn.softmax(descending, axis=-1)
    mass = jnp.cumsum(probs, axis=-1)
    mass_before = jnp.concatenate([jnp.zeros_like(mass[..., :1]), mass[..., :-1]], axis=-1)
    keep = (mass_before < top_p - _TOP_P_SLACK).at[..., 0].set(True)
    cutoff = jnp.min(jnp.where(keep, descending, jnp.inf), axis=-1, keepdims=True)
    logits = jnp.where(logits < cutoff, -jnp.inf, logits)
  return logits


def sample_logits(logits: Array, rng: Array, *, temperature: float = 1.0, top_k: int = 0,
                  top_p: float = 1.0) -> Array:
  """One int32 token per row of `logits[..., V]`: the argmax at temperature 0, else a sample of softmax(logits / T)
  restricted by `filter_logits`."""
  if temperature == 0.0:
    return jnp.argmax(logits, axis=-1).astype(jnp.int32)
  logits = filter_logits(logits.astype(jnp.float32) / temperature, top_k, top_p)
  return jax.random.categorical(rng, logits, axis=-1).astype(jnp.int32)


def temperature_sample(logits_fn: LogitsFn, cache: Cache, prompt: Array, prompt_lengths: Array, *,
                       num_new_tokens: int, rng: Array, temperature: float = 1.0, top_k: int = 0,
                       top_p: float = 1.0, eos_id: int | None = None, pad_id: int = 0) -> tuple[Array, Array]:
  """Continues each row of the right-padded `prompt[B, P]` by `num_new_tokens` tokens (fewer if it samples eos_id).

  Index 0 feeds prompt[:, 0]. While a row is inside its prompt (`prompt_lengths[b] >= 1` tokens) its next token is
  forced to the prompt's, so the prompt enters the cache one position per step (teacher forcing, as in t5x) and rows
  of different lengths share one `index`; after that the row samples (greedy at temperature 0). The loop feeds at
  most max(prompt_lengths) - 1 + num_new_tokens positions: size the cache for P + num_new_tokens. It stops early
  once every row is done.

  Returns (new_tokens[B, num_new_tokens], lengths[B]): the tokens after each prompt, an EOS kept and pad_id after
  it, and how many were generated (EOS included). Example, num_new_tokens=3, eos_id=1:

    prompt = [[5, 6], [7, 0]], prompt_lengths = [2, 1]
    index 0 feeds [5, 7]: row 0 is forced to 6, row 1 samples a.
    index 1 feeds [6, a]: row 0 samples b, row 1 samples 1 (EOS) and is done.
    index 2 feeds [b, pad]: row 0 samples c.  index 3 feeds [c, pad]: row 0 samples d and is done.
    -> new_tokens = [[b, c, d], [a, 1, pad]], lengths = [3, 2]
  """
  _check_sampling(temperature, top_k, top_p)
  _check(num_new_tokens >= 1, 'num_new_tokens', num_new_tokens, 'must be >= 1')
  _check(np.ndim(prompt) == 2, 'prompt.shape', np.shape(prompt), 'must be [batch, length]')
  batch, prompt_len = np.shape(prompt)
  _check(np.shape(prompt_lengths) == (batch,), 'prompt_lengths.shape', np.shape(prompt_lengths), f'must be ({batch},)')
  if not isinstance(prompt_lengths, jax.core.Tracer):  # Values can only be checked outside jit.
    lengths = np.asarray(prompt_lengths)
    _check(bool(np.all((lengths >= 1) & (lengths <= prompt_len))), 'prompt_lengths', lengths.tolist(),
           f'must be in [1, {prompt_len}]')
  prompt = jnp.asarray(prompt, jnp.int32)
  prompt_lengths = jnp.asarray(prompt_lengths, jnp.int32)
  slots = jnp.arange(num_new_tokens)

  def step(state):
    index, tokens, cache, new_tokens, lengths, done = state
    logits, cache = logits_fn(tokens, index, cache)
    sampled = sample_logits(logits, jax.random.fold_in(rng, index), temperature=temperature, top_k=top_k,
                            top_p=top_p)
    in_prompt = index + 1 < prompt_lengths
    forced = prompt[:, jnp.minimum(index + 1, prompt_len - 1)]
    slot = index + 1 - prompt_lengths  # Where a sampled token goes in new_tokens.
    write = ~in_prompt & ~done
    new_tokens = jnp.where(write[:, None] & (slots == slot[:, None]), sampled[:, None], new_tokens)
    lengths = lengths + write
    stop = slot == num_new_tokens - 1
    if eos_id is not None:
      stop |= sampled == eos_id
    done |= write & stop
    tokens = jnp.where(in_prompt, forced, jnp.where(done, pad_id, sampled))
    return index + 1, tokens, cache, new_tokens, lengths, done

  state = (jnp.zeros((), jnp.int32), prompt[:, 0], cache, jnp.full((batch, num_new_tokens), pad_id, jnp.int32),
           jnp.zeros(batch, jnp.int32), jnp.zeros(batch, bool))
  _, _, _, new_tokens, lengths, _ = lax.while_loop(lambda s: ~jnp.all(s[-1]), step, state)
  return new_tokens, lengths


def length_penalty(length: Array | int, alpha: float) -> Array:
  """The GNMT/t5x divisor of a finished hypothesis' log-prob: ((5 + length) / 6) ** alpha; 1 at alpha 0."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def expand_beams(tree: Any, num_beams: int) -> Any:
  """Each row of every leaf repeated num_beams times along dim 0, as beam_search lays out its B * num_beams rows."""
  return jax.tree.map(lambda x: jnp.repeat(x, num_beams, axis=0), tree)


# 62 lines, over the ~60 limit: the loop body updates the live and finished beams together, and apart its
# pieces would pass all eight arrays of the beam state back and forth.
def beam_search(logits_fn: LogitsFn, cache: Cache, start_tokens: Array, *, num_beams: int, max_new_tokens: int,
                eos_id: int, alpha: float = 0.6, pad_id: int = 0) -> tuple[Array, Array]:
  """The `num_beams` best continuations of each `start_tokens[B]` (fed at index 0), by length-penalized log-prob.

  A hypothesis' score is log_prob / length_penalty(length, alpha), its length counting the generated tokens with
  the EOS; one that reaches max_new_tokens without EOS is finished at that length. As in t5x, each step takes the
  top 2 * num_beams extensions of the alive beams: those ending in EOS compete for the finished set, the best
  num_beams others stay alive. The loop stops once no alive beam can beat a row's worst finished hypothesis (valid
  for alpha >= 0: the log-prob only falls and the penalty is largest at max_new_tokens).

  Returns (sequences[B, num_beams, max_new_tokens], scores[B, num_beams]), best first: the generated tokens with
  the EOS and pad_id after it. A slot left empty (fewer possible sequences than beams) scores about NEG_INF.
  `cache` is given per row and expanded here to B * num_beams rows.
  """
  _check(num_beams >= 1, 'num_beams', num_beams, 'must be >= 1')
  _check(max_new_tokens >= 1, 'max_new_tokens', max_new_tokens, 'must be >= 1')
  _check(alpha >= 0, 'alpha', alpha, 'must be >= 0 (the early stop assumes longer hypotheses are not penalized)')
  _check(np.ndim(start_tokens) == 1, 'start_tokens.shape', np.shape(start_tokens), 'must be [batch]')
  batch, beams, length = np.shape(start_tokens)[0], num_beams, max_new_tokens
  positions = jnp.arange(length)
  row_offsets = jnp.arange(batch)[:, None] * beams

  def take(x, indices):  # x[b, indices[b, j], ...] -> [B, J, ...]
    return jnp.take_along_axis(x, indices.reshape(indices.shape + (1,) * (x.ndim - 2)), axis=1)

  def step(state):
    index, tokens, log_probs, seqs, cache, finished_seqs, finished_scores, finished = state
    logits, cache = logits_fn(tokens.reshape(-1), index, cache)
    vocab = logits.shape[-1]
    candidates = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, beams, vocab) + log_probs[..., None]
    # 2 * beams candidates, so that beams stay alive even if the best `beams` all end here.
    cand_log_probs, cand = lax.top_k(candidates.reshape(batch, beams * vocab), 2 * beams)
    cand_beams, cand_tokens = cand // vocab, cand % vocab
    cand_seqs = jnp.where(positions == index, cand_tokens[..., None], take(seqs, cand_beams))
    real = cand_log_probs > NEG_INF / 2  # Not an extension of an empty beam slot.
    ends = real & ((cand_tokens == eos_id) | (index == length - 1))

    log_probs, alive = lax.top_k(jnp.where(ends, NEG_INF, cand_log_probs), beams)
    seqs, tokens = take(cand_seqs, alive), take(cand_tokens, alive)
    origin = (row_offsets + take(cand_beams, alive)).reshape(-1)
    cache = jax.tree.map(lambda x: jnp.take(x, origin, axis=0), cache)

    scores = jnp.where(ends, cand_log_probs / length_penalty(index + 1, alpha), NEG_INF)
    finished_scores, best = lax.top_k(jnp.concatenate([finished_scores, scores], axis=1), beams)
    finished_seqs = take(jnp.concatenate([finished_seqs, cand_seqs], axis=1), best)
    finished = take(jnp.concatenate([finished, ends], axis=1), best)
    return index + 1, tokens, log_probs, seqs, cache, finished_seqs, finished_scores, finished

  def running(state):
    index, _, log_probs, _, _, _, finished_scores, finished = state
    best_alive = log_probs[:, 0] / length_penalty(length, alpha)
    worst_finished = jnp.where(jnp.all(finished, axis=1), finished_scores[:, -1], NEG_INF)
    return (index < length) & ~jnp.all(worst_finished > best_alive)

  # All beams of a row start identical, so only the first is alive: the others would only duplicate it.
  log_probs = jnp.tile(jnp.array([0.0] + [NEG_INF] * (beams - 1), jnp.float32), (batch, 1))
  seqs = jnp.full((batch, beams, length), pad_id, jnp.int32)
  state = (jnp.zeros((), jnp.int32), jnp.repeat(jnp.asarray(start_tokens, jnp.int32)[:, None], beams, axis=1),
           log_probs, seqs, expand_beams(cache, beams), seqs,
           jnp.full((batch, beams), NEG_INF, jnp.float32), jnp.zeros((batch, beams), bool))
  state = lax.while_loop(running, step, state)
  return state[5], state[6]
