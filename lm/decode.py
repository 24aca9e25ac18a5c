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

import typing
from typing import Any, Callable

import jax
from jax import lax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Cache = Any  # A pytree of arrays, each with the row dim first.
LogitsFn = Callable[[Array, Array, Cache], tuple[Array, Cache]]
PrefillFn = Callable[[Array, Cache], Cache]

# Finite, so that masked scores can be added, divided and compared without making NaN (as t5x does).
NEG_INF = -1.0e7
# Hugging Face beam search's mask, which it adds to a masked score: hf_beam_search does too, so that masked
# scores compare as HF's.
HF_MASK = -1.0e9
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
                       top_p: float = 1.0, eos_id: int | None = None, pad_id: int = 0,
                       prefill_fn: PrefillFn | None = None) -> tuple[Array, Array]:
  """Continues each row of the right-padded `prompt[B, P]` by `num_new_tokens` tokens (fewer if it samples eos_id).

  Index 0 feeds prompt[:, 0]. While a row is inside its prompt (`prompt_lengths[b] >= 1` tokens) its next token is
  forced to the prompt's, so the prompt enters the cache one position per step (teacher forcing, as in t5x) and rows
  of different lengths share one `index`; after that the row samples (greedy at temperature 0). The loop feeds at
  most max(prompt_lengths) - 1 + num_new_tokens positions: size the cache for P + num_new_tokens. It stops early
  once every row is done.

  `prefill_fn(prompt, cache) -> cache` (decoder-only models) writes all P prompt positions into the cache in one
  pass. The loop then starts at index min(prompt_lengths) - 1: every position before it holds a real token of
  every row, and each later one is written again by the loop before any query attends to it (queries attend to
  positions up to their own). The tokens are those of the loop alone, up to float rounding.

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

  start = jnp.zeros((), jnp.int32)
  if prefill_fn is not None:
    cache = prefill_fn(prompt, cache)
    start = jnp.min(prompt_lengths) - 1
  state = (start, prompt[:, start], cache, jnp.full((batch, num_new_tokens), pad_id, jnp.int32),
           jnp.zeros(batch, jnp.int32), jnp.zeros(batch, bool))
  _, _, _, new_tokens, lengths, _ = lax.while_loop(lambda s: ~jnp.all(s[-1]), step, state)
  return new_tokens, lengths


def length_penalty(length: Array | int, alpha: float) -> Array:
  """The GNMT/t5x divisor of a finished hypothesis' log-prob: ((5 + length) / 6) ** alpha; 1 at alpha 0."""
  return ((5.0 + jnp.asarray(length, jnp.float32)) / 6.0) ** alpha


def expand_beams(tree: Any, num_beams: int) -> Any:
  """Each row of every leaf repeated num_beams times along dim 0, as beam_search lays out its B * num_beams rows."""
  return jax.tree.map(lambda x: jnp.repeat(x, num_beams, axis=0), tree)


def _take(x: Array, indices: Array) -> Array:
  """x[b, indices[b, j], ...] -> [B, J, ...]."""
  return jnp.take_along_axis(x, indices.reshape(indices.shape + (1,) * (x.ndim - 2)), axis=1)


class _Candidates(typing.NamedTuple):
  """Each row's 2 * num_beams likeliest one-token extensions of its running beams, best first: [B, 2 * beams]."""
  log_probs: Array
  beams: Array  # The running beam each extends.
  tokens: Array  # The token it adds.
  seqs: Array  # [B, 2 * beams, max_new_tokens]: the generated tokens so far, that token included.


def _extend(logits_fn: LogitsFn, index: Array, tokens: Array, log_probs: Array, seqs: Array,
            cache: Cache) -> tuple[_Candidates, Cache]:
  """Feeds each beam's last token (`tokens[B, beams]`) at `index`; the candidates that extend them, and the cache."""
  batch, beams, length = seqs.shape
  logits, cache = logits_fn(tokens.reshape(-1), index, cache)
  vocab = logits.shape[-1]
  extended = jax.nn.log_softmax(logits.astype(jnp.float32)).reshape(batch, beams, vocab) + log_probs[..., None]
  # 2 * beams candidates, so that beams stay alive even if the best `beams` all end here.
  cand_log_probs, cand = lax.top_k(extended.reshape(batch, beams * vocab), 2 * beams)
  cand_beams, cand_tokens = cand // vocab, cand % vocab
  cand_seqs = jnp.where(jnp.arange(length) == index, cand_tokens[..., None], _take(seqs, cand_beams))
  return _Candidates(cand_log_probs, cand_beams, cand_tokens, cand_seqs), cache


def _keep_running(cands: _Candidates, ranking: Array, cache: Cache) -> tuple[Array, Array, Array, Cache]:
  """The num_beams candidates of each row that rank highest by `ranking[B, 2 * beams]` (the ended ones masked), as
  the next running beams: (tokens, their `ranking` values as log-probs, seqs, the cache reordered to them)."""
  batch, beams = cands.seqs.shape[0], cands.seqs.shape[1] // 2
  log_probs, alive = lax.top_k(ranking, beams)
  origin = (jnp.arange(batch)[:, None] * beams + _take(cands.beams, alive)).reshape(-1)
  cache = jax.tree.map(lambda x: jnp.take(x, origin, axis=0), cache)
  return _take(cands.tokens, alive), log_probs, _take(cands.seqs, alive), cache


def _keep_finished(finished_seqs: Array, finished_scores: Array, finished: Array, cands: _Candidates,
                   scores: Array, ends: Array) -> tuple[Array, Array, Array]:
  """The num_beams best of a row's finished hypotheses and its candidates (`scores`: those that may not finish now
  masked), best first."""
  finished_scores, best = lax.top_k(jnp.concatenate([finished_scores, scores], axis=1), finished_scores.shape[1])
  finished_seqs = _take(jnp.concatenate([finished_seqs, cands.seqs], axis=1), best)
  return finished_seqs, finished_scores, _take(jnp.concatenate([finished, ends], axis=1), best)


def _initial_beams(start_tokens: Array, beams: int, length: int, pad_id: int,
                   masked: float) -> tuple[Array, Array, Array]:
  """The running beams' (tokens, log_probs, seqs) at the start. All beams of a row start identical, so only the
  first is alive: the others would only duplicate it."""
  batch = np.shape(start_tokens)[0]
  tokens = jnp.repeat(jnp.asarray(start_tokens, jnp.int32)[:, None], beams, axis=1)
  log_probs = jnp.tile(jnp.array([0.0] + [masked] * (beams - 1), jnp.float32), (batch, 1))
  return tokens, log_probs, jnp.full((batch, beams, length), pad_id, jnp.int32)


def _check_beams(num_beams: int, max_new_tokens: int, start_tokens: Array) -> None:
  _check(num_beams >= 1, 'num_beams', num_beams, 'must be >= 1')
  _check(max_new_tokens >= 1, 'max_new_tokens', max_new_tokens, 'must be >= 1')
  _check(np.ndim(start_tokens) == 1, 'start_tokens.shape', np.shape(start_tokens), 'must be [batch]')


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
  _check_beams(num_beams, max_new_tokens, start_tokens)
  _check(alpha >= 0, 'alpha', alpha, 'must be >= 0 (the early stop assumes longer hypotheses are not penalized)')
  batch, beams, length = np.shape(start_tokens)[0], num_beams, max_new_tokens

  def step(state):
    index, tokens, log_probs, seqs, cache, finished_seqs, finished_scores, finished = state
    cands, cache = _extend(logits_fn, index, tokens, log_probs, seqs, cache)
    real = cands.log_probs > NEG_INF / 2  # Not an extension of an empty beam slot.
    ends = real & ((cands.tokens == eos_id) | (index == length - 1))
    tokens, log_probs, seqs, cache = _keep_running(cands, jnp.where(ends, NEG_INF, cands.log_probs), cache)
    scores = jnp.where(ends, cands.log_probs / length_penalty(index + 1, alpha), NEG_INF)
    finished_seqs, finished_scores, finished = _keep_finished(finished_seqs, finished_scores, finished, cands,
                                                              scores, ends)
    return index + 1, tokens, log_probs, seqs, cache, finished_seqs, finished_scores, finished

  def running(state):
    index, _, log_probs, _, _, _, finished_scores, finished = state
    best_alive = log_probs[:, 0] / length_penalty(length, alpha)
    worst_finished = jnp.where(jnp.all(finished, axis=1), finished_scores[:, -1], NEG_INF)
    return (index < length) & ~jnp.all(worst_finished > best_alive)

  tokens, log_probs, seqs = _initial_beams(start_tokens, beams, length, pad_id, NEG_INF)
  state = (jnp.zeros((), jnp.int32), tokens, log_probs, seqs, expand_beams(cache, beams), seqs,
           jnp.full((batch, beams), NEG_INF, jnp.float32), jnp.zeros((batch, beams), bool))
  state = lax.while_loop(running, step, state)
  return state[5], state[6]


def hf_beam_search(logits_fn: LogitsFn, cache: Cache, start_tokens: Array, *, num_beams: int, max_new_tokens: int,
                   eos_id: int, alpha: float = 1.0, pad_id: int = 0) -> tuple[Array, Array]:
  """beam_search by the rules of Hugging Face `generate(num_beams=num_beams, length_penalty=alpha,
  early_stopping=False)` (transformers 5's `_beam_search`; one EOS id, no logits processors): its tokens for
  max_length = max_new_tokens + the decoder prompt's length (T5's is its start token: max_length=50 is
  max_new_tokens=49). Same contract as beam_search (where HF pads after the EOS with EOS if pad_token_id is 0,
  this pads with pad_id); the rules that differ:

  - A finished hypothesis of n generated tokens (the EOS included) scores log_prob / n ** alpha, for any alpha.
  - Of each row's 2 * num_beams candidates only those ending in EOS among the best num_beams finish; an EOS
    candidate below them is dropped. At max_new_tokens the best num_beams candidates finish.
  - A row stops once its num_beams finished slots are full and its best running beam's score at its current
    length, log_prob / n ** alpha, is no better than its worst finished one: a heuristic (for alpha > 0 a longer
    hypothesis may still have won). A stopped row finishes nothing more while the other rows run on.
  - Masks are HF's -1e9 (HF_MASK), added to a score rather than put in its place, so masked scores compare as
    HF's; a slot left empty scores about HF_MASK.

  Example, num_beams=1, eos_id=1, candidates (token, log-prob) at step 0: (2, -0.5), (1, -0.6). t5x finishes
  [1] at -0.6 and keeps [2] running; HF keeps [2] running and drops [1], as the second of 2 candidates.
  On exactly equal scores torch.topk and lax.top_k (lower index first) may choose differently.
  """
  _check_beams(num_beams, max_new_tokens, start_tokens)
  batch, beams, length = np.shape(start_tokens)[0], num_beams, max_new_tokens
  # HF divides by n ** alpha, a Python float (float64): the same, rounded once to float32.
  divisors = jnp.asarray(np.arange(1, length + 1, dtype=np.float64) ** alpha, jnp.float32)
  may_finish = jnp.arange(2 * beams) < beams
  masked = lambda condition: jnp.where(condition, HF_MASK, 0.0)

  def step(state):
    index, tokens, log_probs, seqs, cache, finished_seqs, finished_scores, finished, open_rows = state
    cands, cache = _extend(logits_fn, index, tokens, log_probs, seqs, cache)
    ends = (cands.tokens == eos_id) | (index == length - 1)
    tokens, log_probs, seqs, cache = _keep_running(cands, cands.log_probs + masked(ends), cache)
    ends &= may_finish
    # HF's order of additions, so that the float32 sums are its.
    scores = cands.log_probs / divisors[index] + masked(~open_rows[:, None]) + masked(~ends)
    finished_seqs, finished_scores, finished = _keep_finished(finished_seqs, finished_scores, finished, cands,
                                                              scores, ends)
    worst_finished = jnp.where(finished, jnp.min(finished_scores, axis=1, keepdims=True), HF_MASK)
    open_rows &= jnp.any(log_probs[:, :1] / divisors[index] > worst_finished, axis=1)
    return index + 1, tokens, log_probs, seqs, cache, finished_seqs, finished_scores, finished, open_rows

  tokens, log_probs, seqs = _initial_beams(start_tokens, beams, length, pad_id, HF_MASK)
  state = (jnp.zeros((), jnp.int32), tokens, log_probs, seqs, expand_beams(cache, beams), seqs,
           jnp.full((batch, beams), HF_MASK, jnp.float32), jnp.zeros((batch, beams), bool), jnp.ones(batch, bool))
  state = lax.while_loop(lambda s: (s[0] < length) & jnp.any(s[-1]), step, state)
  return state[5], state[6]


# decode.beam_convention -> its search; both take the same arguments.
BEAM_SEARCHES = {'t5x': beam_search, 'hf': hf_beam_search}
