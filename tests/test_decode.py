import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import decode

# --- temperature_sample ------------------------------------------------------------------------------------------

SUM_VOCAB = 11


def sum_logits_fn(tokens, index, cache):
  """Predicts (sum of the tokens fed so far + index) % SUM_VOCAB: right only if every prompt token goes through the
  cache at its own index."""
  total = cache['sum'] + tokens
  return 10.0 * jax.nn.one_hot((total + index) % SUM_VOCAB, SUM_VOCAB), {'sum': total}


def sum_reference(prompt, num_new_tokens, eos_id=None):
  seq, new = list(prompt), []
  while len(new) < num_new_tokens:
    token = (sum(seq) + len(seq) - 1) % SUM_VOCAB
    seq.append(token)
    new.append(token)
    if token == eos_id:
      break
  return new


def greedy(prompt, lengths, num_new_tokens, eos_id=None, logits_fn=sum_logits_fn, cache=None):
  cache = {'sum': jnp.zeros(len(lengths), jnp.int32)} if cache is None else cache
  run = jax.jit(lambda p, n: decode.temperature_sample(logits_fn, cache, p, n, num_new_tokens=num_new_tokens,
                                                       rng=jax.random.PRNGKey(0), temperature=0.0, eos_id=eos_id))
  return run(jnp.asarray(prompt, jnp.int32), jnp.asarray(lengths, jnp.int32))


def test_greedy_respects_prompts_of_different_lengths():
  prompt, lengths = [[3, 5, 2], [4, 0, 0], [1, 6, 0]], [3, 1, 2]
  new, got_lengths = greedy(prompt, lengths, num_new_tokens=5)
  expected = [sum_reference(p[:n], 5) for p, n in zip(prompt, lengths)]
  np.testing.assert_array_equal(new, expected)
  np.testing.assert_array_equal(got_lengths, [5, 5, 5])
  assert expected[0][0] == 1 and expected[1][0] == 4  # The prompts' continuations, not their tokens.


def test_eos_is_kept_then_pads():
  prompt, lengths, eos = [[3, 5, 2], [4, 0, 0], [1, 6, 0]], [3, 1, 2], 8
  new, got_lengths = greedy(prompt, lengths, num_new_tokens=7, eos_id=eos)
  expected = [[1, 3, 7, 4, 9, 8, 0], [4, 9, 8, 0, 0, 0, 0], [8, 0, 0, 0, 0, 0, 0]]
  assert [sum_reference(p[:n], 7, eos) for p, n in zip(prompt, lengths)] == [
      [1, 3, 7, 4, 9, 8], [4, 9, 8], [8]]
  np.testing.assert_array_equal(new, expected)
  np.testing.assert_array_equal(got_lengths, [6, 3, 1])


def test_the_loop_stops_once_every_row_is_done():
  """Row b emits EOS (1) at its (b + 1)-th new token; the loop must stop after the last row's, not run 8 steps."""
  calls = []

  def countdown_logits_fn(tokens, index, cache):
    jax.debug.callback(lambda i: calls.append(int(i)), index)
    left = cache['left'] - 1
    return 10.0 * jax.nn.one_hot(jnp.where(left <= 0, 1, 2), 4), {'left': left}

  cache = {'left': jnp.array([1, 2, 3], jnp.int32)}
  new, lengths = greedy(np.zeros((3, 1)), [1, 1, 1], 8, eos_id=1, logits_fn=countdown_logits_fn, cache=cache)
  jax.effects_barrier()
  np.testing.assert_array_equal(new, [[1] + [0] * 7, [2, 1] + [0] * 6, [2, 2, 1] + [0] * 5])
  np.testing.assert_array_equal(lengths, [1, 2, 3])
  assert calls == [0, 1, 2]


def constant_logits_fn(logits):
  """Every row, every step: the same logits (no cache)."""
  return lambda tokens, index, cache: (jnp.broadcast_to(logits, (tokens.shape[0], logits.shape[0])), cache)


def sample_picks(probs, rows=2000, seeds=3, **kwargs):
  """The first new token of many rows, over a few seeds."""
  logits = jnp.log(jnp.asarray(probs, jnp.float32))
  prompt, lengths = jnp.zeros((rows, 1), jnp.int32), jnp.ones(rows, jnp.int32)
  run = jax.jit(lambda rng: decode.temperature_sample(constant_logits_fn(logits), {}, prompt, lengths,
                                                      num_new_tokens=1, rng=rng, **kwargs)[0][:, 0])
  return np.concatenate([np.asarray(run(jax.random.PRNGKey(seed))) for seed in range(seeds)])


PROBS = [0.05, 0.3, 0.1, 0.35, 0.2]


@pytest.mark.parametrize('kwargs,allowed', [
    (dict(top_k=2), {1, 3}),
    (dict(top_k=3), {1, 3, 4}),
    (dict(top_p=0.65), {1, 3}),  # 0.35 + 0.3 reaches p exactly: the set stops there.
    (dict(top_p=0.66), {1, 3, 4}),
    (dict(top_p=0.2), {3}),  # The most likely token is always kept.
    (dict(top_k=3, top_p=0.5), {1, 3}),  # Top-p of the top-k distribution [.41, .35, .24].
    (dict(top_k=3, top_p=0.4), {3}),
    (dict(temperature=2.0, top_p=0.6), {1, 3, 4}),  # Top-p after temperature: [.24, .22, .18, ...].
])
def test_top_k_and_top_p_sample_exactly_their_sets(kwargs, allowed):
  assert set(sample_picks(PROBS, **kwargs).tolist()) == allowed


def test_filter_logits_keeps_exactly_the_sets():
  logits = jnp.log(jnp.array([PROBS, PROBS[::-1]]))
  kept = lambda filtered: [set(np.flatnonzero(np.isfinite(row)).tolist()) for row in np.asarray(filtered)]
  assert kept(decode.filter_logits(logits, top_k=2)) == [{1, 3}, {1, 3}]
  assert kept(decode.filter_logits(logits, top_p=0.65)) == [{1, 3}, {1, 3}]
  assert kept(decode.filter_logits(logits, top_p=1.0)) == [set(range(5))] * 2
  np.testing.assert_array_equal(decode.filter_logits(logits, top_k=2)[0, [1, 3]], logits[0, [1, 3]])


@pytest.mark.parametrize('temperature', [1.0, 2.0])
def test_temperature_sampling_matches_the_tempered_distribution(temperature):
  picks = sample_picks(PROBS, rows=4000, seeds=2, temperature=temperature)
  expected = np.asarray(jax.nn.softmax(jnp.log(jnp.array(PROBS)) / temperature))
  np.testing.assert_allclose(np.bincount(picks, minlength=5) / len(picks), expected, atol=0.02)


def test_sampling_differs_across_rows_steps_and_seeds_but_repeats_for_a_seed():
  logits = jnp.zeros(5)
  run = jax.jit(lambda rng: decode.temperature_sample(constant_logits_fn(logits), {}, jnp.zeros((50, 1), jnp.int32),
                                                      jnp.ones(50, jnp.int32), num_new_tokens=4, rng=rng)[0])
  first, again, other = (np.asarray(run(jax.random.PRNGKey(seed))) for seed in (0, 0, 1))
  np.testing.assert_array_equal(first, again)
  assert len(set(first[:, 0].tolist())) > 1  # Across rows.
  assert not np.array_equal(first[:, 0], first[:, 1])  # Across steps.
  assert not np.array_equal(first, other)  # Across seeds.


# --- Beam search -------------------------------------------------------------------------------------------------

START, EOS, A, B = 0, 1, 2, 3
HASH = 7  # Buckets of the history in `history_model`.


def table_logits_fn(probs):
  """logits = log probs[index][previous token]: a hand-written model with no cache."""
  table = jnp.log(jnp.asarray(probs, jnp.float32))
  return lambda tokens, index, cache: (table[index, tokens], cache)


def beam(probs, num_beams, alpha=0.0, max_new_tokens=2):
  run = jax.jit(lambda start: decode.beam_search(table_logits_fn(probs), {}, start, num_beams=num_beams,
                                                 max_new_tokens=max_new_tokens, eos_id=EOS, alpha=alpha))
  return run(jnp.array([START], jnp.int32))


def test_beam_search_finds_the_best_sequence_greedy_misses():
  """A is likelier first (0.55) but every continuation of A is poor; B then EOS is the best sequence."""
  uniform = [0.25] * 4
  probs = [[[0, 0, 0.55, 0.45], uniform, uniform, uniform],
           [uniform, uniform, [0, 0.34, 0.33, 0.33], [0, 0.9, 0.05, 0.05]]]
  seqs, scores = beam(probs, num_beams=2)
  np.testing.assert_array_equal(seqs[0], [[B, EOS], [A, EOS]])
  np.testing.assert_allclose(scores[0], np.log([0.45 * 0.9, 0.55 * 0.34]), rtol=1e-5)
  greedy_tokens, _ = decode.temperature_sample(table_logits_fn(probs), {}, jnp.array([[START]]), jnp.array([1]),
                                               num_new_tokens=2, rng=jax.random.PRNGKey(0), temperature=0.0,
                                               eos_id=EOS)
  np.testing.assert_array_equal(greedy_tokens, [[A, EOS]])
  np.testing.assert_array_equal(beam(probs, num_beams=1)[0][0], [[A, EOS]])


def test_length_penalty_ranks_as_defined():
  """[EOS] has log-prob log 0.4, [A, EOS] log 0.3: the short one wins at alpha 0, the long one at alpha 3."""
  uniform = [0.25] * 4
  probs = [[[0, 0.4, 0.6, 0], uniform, uniform, uniform], [uniform, uniform, [0, 0.5, 0.25, 0.25], uniform]]
  seqs, scores = beam(probs, num_beams=2, alpha=0.0)
  np.testing.assert_array_equal(seqs[0], [[EOS, START], [A, EOS]])
  np.testing.assert_allclose(scores[0], np.log([0.4, 0.3]), rtol=1e-5)

  seqs, scores = beam(probs, num_beams=3, alpha=3.0)
  penalty = lambda length: ((5 + length) / 6) ** 3.0
  np.testing.assert_array_equal(seqs[0], [[A, EOS], [EOS, START], [A, A]])  # [A, A] finished at max length.
  np.testing.assert_allclose(scores[0], [np.log(0.3) / penalty(2), np.log(0.4) / penalty(1), np.log(0.15) / penalty(2)],
                             rtol=1e-5)
  np.testing.assert_allclose(decode.length_penalty(2, 3.0), penalty(2), rtol=1e-6)


def test_beam_search_stops_once_no_alive_beam_can_win():
  """EOS has probability 0.9 at every step: after [EOS] and [A, EOS] finish, the alive [A, A] (0.01) cannot win."""
  calls = []
  constant = constant_logits_fn(jnp.log(jnp.array([0.0, 0.9, 0.1, 0.0])))

  def logits_fn(tokens, index, cache):
    jax.debug.callback(lambda i: calls.append(int(i)), index)
    return constant(tokens, index, cache)

  seqs, scores = decode.beam_search(logits_fn, {}, jnp.array([START]), num_beams=2, max_new_tokens=10, eos_id=EOS,
                                    alpha=0.0)
  jax.effects_barrier()
  np.testing.assert_array_equal(seqs[0], [[EOS] + [0] * 9, [A, EOS] + [0] * 8])
  np.testing.assert_allclose(scores[0], np.log([0.9, 0.09]), rtol=1e-5)
  assert calls == [0, 1]


def history_model(vocab, rows, length, seed=0):
  """A model whose logits depend on the whole ordered history through a KV-like cache (tokens written at their
  index) and on the row (a cache leaf too), with an exact numpy twin for brute force."""
  rng = np.random.default_rng(seed)
  table = rng.normal(size=(rows, length, vocab, vocab)).astype(np.float32)
  bonus = 2.0 * rng.normal(size=(HASH, vocab)).astype(np.float32)

  def logits_fn(tokens, index, cache):
    fed = cache['fed'].at[:, index].set(tokens)
    key = jnp.sum(fed * (jnp.arange(length) + 1) * (jnp.arange(length) <= index), axis=1) % HASH
    return jnp.asarray(table)[cache['row'], index, tokens] + jnp.asarray(bonus)[key], {**cache, 'fed': fed}

  def log_prob(row, start, seq):
    history, total = [start], 0.0
    for token in seq:
      key = sum(t * (i + 1) for i, t in enumerate(history)) % HASH
      logits = table[row, len(history) - 1, history[-1]] + bonus[key]
      total += jax.nn.log_softmax(logits.astype(np.float64))[token]
      history.append(token)
    return float(total)

  cache = {'fed': jnp.zeros((rows, length), jnp.int32), 'row': jnp.arange(rows)}
  return logits_fn, cache, log_prob


def brute_force(log_prob, row, start, vocab, length, alpha, num_beams):
  hypotheses = []
  for n in range(1, length + 1):
    for seq in itertools.product(range(vocab), repeat=n):
      if EOS in seq[:-1] or (n < length and seq[-1] != EOS):
        continue
      score = log_prob(row, start, seq) / ((5 + n) / 6) ** alpha
      hypotheses.append((score, list(seq) + [0] * (length - n)))
  return sorted(hypotheses, key=lambda h: -h[0])[:num_beams]


def test_beam_search_with_enough_beams_is_exact_and_reorders_caches():
  """With 2 * num_beams >= all extensions nothing is pruned, so beam search must return the brute-force top
  hypotheses; any mistake in repeating, gathering or threading the cache changes the log-probs."""
  vocab, length, num_beams, alpha = 4, 3, 18, 0.6
  logits_fn, cache, log_prob = history_model(vocab, rows=2, length=length)
  start = jnp.array([START, A], jnp.int32)
  seqs, scores = jax.jit(lambda c, s: decode.beam_search(logits_fn, c, s, num_beams=num_beams, max_new_tokens=length,
                                                         eos_id=EOS, alpha=alpha))(cache, start)
  for row in range(2):
    expected = brute_force(log_prob, row, int(start[row]), vocab, length, alpha, num_beams)
    np.testing.assert_array_equal(seqs[row], [seq for _, seq in expected])
    np.testing.assert_allclose(scores[row], [score for score, _ in expected], rtol=1e-5)


def test_narrow_beams_score_their_sequences_exactly():
  """With few beams the search prunes, but every returned score must still be its sequence's true score."""
  vocab, length, alpha = 5, 5, 0.6
  logits_fn, cache, log_prob = history_model(vocab, rows=2, length=length, seed=4)
  seqs, scores = decode.beam_search(logits_fn, cache, jnp.array([START, B]), num_beams=3, max_new_tokens=length,
                                    eos_id=EOS, alpha=alpha)
  for row, start in enumerate([START, B]):
    assert np.all(np.diff(np.asarray(scores[row])) <= 0)
    for seq, score in zip(np.asarray(seqs[row]).tolist(), np.asarray(scores[row])):
      n = seq.index(EOS) + 1 if EOS in seq else length
      assert all(t == 0 for t in seq[n:])
      np.testing.assert_allclose(score, log_prob(row, start, seq[:n]) / ((5 + n) / 6) ** alpha, rtol=1e-5)


def hf_beam(probs, num_beams, alpha=1.0, max_new_tokens=2):
  run = jax.jit(lambda start: decode.hf_beam_search(table_logits_fn(probs), {}, start, num_beams=num_beams,
                                                    max_new_tokens=max_new_tokens, eos_id=EOS, alpha=alpha))
  return run(jnp.array([START], jnp.int32))


# Step 0: A 0.6, EOS 0.4; after A: EOS 0.5, A 0.3, B 0.2.
TWO_STEPS = [[[0, 0.4, 0.6, 0], [0.25] * 4, [0.25] * 4, [0.25] * 4],
             [[0.25] * 4, [0.25] * 4, [0, 0.5, 0.3, 0.2], [0.25] * 4]]


def test_hf_drops_an_eos_below_the_best_num_beams_candidates():
  """One beam, two candidates at step 0: A, then EOS. t5x finishes [EOS] (0.4 beats [A, EOS]'s 0.3); HF drops
  it, as only the best num_beams candidates may finish, and returns [A, EOS]."""
  seqs, scores = beam(TWO_STEPS, num_beams=1, alpha=0.0)
  np.testing.assert_array_equal(seqs[0], [[EOS, START]])
  seqs, scores = hf_beam(TWO_STEPS, num_beams=1, alpha=0.0)
  np.testing.assert_array_equal(seqs[0], [[A, EOS]])
  np.testing.assert_allclose(scores[0], np.log([0.3]), rtol=1e-5)


@pytest.mark.parametrize('alpha,expected,scores', [
    (0.0, [[EOS, START], [A, EOS]], [np.log(0.4), np.log(0.3)]),
    (1.0, [[A, EOS], [A, A]], [np.log(0.3) / 2, np.log(0.18) / 2]),  # [A, A] finished at max length.
    (-1.0, [[EOS, START], [A, EOS]], [np.log(0.4), np.log(0.3) * 2]),
])
def test_hf_scores_divide_by_the_generated_length(alpha, expected, scores):
  """HF's score: log_prob / n ** alpha, n the generated tokens with the EOS ([EOS]: 1)."""
  seqs, got = hf_beam(TWO_STEPS, num_beams=2, alpha=alpha)
  np.testing.assert_array_equal(seqs[0], expected)
  np.testing.assert_allclose(got[0], scores, rtol=1e-5)


# --- Argument validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize('kwargs,message', [
    (dict(temperature=-1.0), 'temperature=-1.0'),
    (dict(top_k=-1), 'top_k=-1'),
    (dict(top_p=0.0), 'top_p=0.0'),
    (dict(top_p=1.5), 'top_p=1.5'),
    (dict(num_new_tokens=0), 'num_new_tokens=0'),
])
def test_temperature_sample_rejects_bad_arguments(kwargs, message):
  kwargs = {'num_new_tokens': 1, **kwargs}
  with pytest.raises(ValueError, match=message):
    decode.temperature_sample(sum_logits_fn, {}, jnp.zeros((1, 2), jnp.int32), jnp.ones(1, jnp.int32),
                              rng=jax.random.PRNGKey(0), **kwargs)


def test_temperature_sample_rejects_bad_prompt_lengths():
  with pytest.raises(ValueError, match=r'prompt_lengths=\[1, 0\]'):
    decode.temperature_sample(sum_logits_fn, {}, jnp.zeros((2, 2), jnp.int32), jnp.array([1, 0]),
                              num_new_tokens=1, rng=jax.random.PRNGKey(0))


@pytest.mark.parametrize('kwargs,message', [
    (dict(num_beams=0), 'num_beams=0'),
    (dict(max_new_tokens=0), 'max_new_tokens=0'),
    (dict(alpha=-0.5), 'alpha=-0.5'),
])
def test_beam_search_rejects_bad_arguments(kwargs, message):
  kwargs = {'num_beams': 2, 'max_new_tokens': 2, **kwargs}
  for name, search in decode.BEAM_SEARCHES.items():
    if name == 'hf' and 'alpha' in kwargs:
      continue  # HF's length_penalty may be negative (test_hf_scores_divide_by_the_generated_length).
    with pytest.raises(ValueError, match=message):
      search(sum_logits_fn, {}, jnp.zeros(1, jnp.int32), eos_id=EOS, **kwargs)
