"""decode.hf_beam_search against Hugging Face `generate` itself: one tiny model in both frameworks, the same tokens.

The model is a lookup table whose logits depend on the whole history (its first token picks the row's table,
the last token and the position index it, a hash of all tokens adds a bonus), so a wrongly reordered beam or a
wrong length changes the result. HF recomputes it from the full sequence (use_cache=False); the JAX twin keeps
the history in its cache, as a KV cache would. Each of HF's rules matters here: with t5x's finishing rule, with
stopped rows still finishing, with the stop heuristic at max_length, or with the prompt counted in the length,
some case below fails.

torch.topk and lax.top_k may order equal values differently, and torch's and XLA's log-softmax round apart by
an ulp, so on an (almost) exact tie the searches could part without either being wrong. Random float tables make
that improbable, and the seeds are fixed, so a pass is repeatable.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from lm import decode

try:  # The hf extra. Without it the tests skip (the `hf_models` fixture), which fails under CI=true (conftest.py).
  import torch
  import transformers
except ImportError as e:
  torch = transformers = None
  MISSING = f'needs torch and transformers, the hf extra (pip install -e .[hf]): {e}'

PAD, EOS = 0, 1  # T5's ids.
VOCAB, HASH, BEAMS, NEW_TOKENS, ROWS = 32, 7, 4, 8, 30
MAX_PROMPT = 3
FIRST = np.arange(2, 2 + ROWS)  # Each row's first token, which picks its table: 30 models in one batch.
# EOS logit offsets by first token, from never (a row that reaches max_length) to mostly: hypotheses finish at
# every step, so finished slots fill, get replaced, and rows stop early.
EOS_BIAS = np.linspace(-6.0, 6.0, VOCAB)


def make_tables(seed=0):
  rng = np.random.default_rng(seed)
  table = 1.5 * rng.normal(size=(VOCAB, MAX_PROMPT + NEW_TOKENS, VOCAB, VOCAB)).astype(np.float32)
  table[..., EOS] += EOS_BIAS[:, None, None].astype(np.float32)
  return table, rng.normal(size=(HASH, VOCAB)).astype(np.float32)


TABLE, BONUS = make_tables()


def make_hf_models():
  """The torch twins of the table model: (decoder-only, encoder-decoder)."""

  class TableConfig(transformers.PreTrainedConfig):
    model_type = 'lm_beam_table'

    def __init__(self, vocab_size=VOCAB, **kwargs):
      self.vocab_size = vocab_size
      super().__init__(**kwargs)

  class IdEncoder(torch.nn.Module):
    """The encoder input's ids as its output."""
    main_input_name = 'input_ids'

    def forward(self, input_ids, **kwargs):
      return transformers.modeling_outputs.BaseModelOutput(last_hidden_state=input_ids[..., None].float())

  class TableLM(transformers.PreTrainedModel, transformers.GenerationMixin):
    """logits(history) = table[row, len(history) - 1, history[-1]] + bonus[hash(history)], where the row is the
    history's first token (decoder-only) or the encoder input's (encoder-decoder, whose history starts with the
    decoder start token). `calls` counts the forward passes."""
    config_class = TableConfig

    def __init__(self, config):
      super().__init__(config)
      self.table = torch.nn.Parameter(torch.tensor(TABLE), requires_grad=False)
      self.bonus = torch.nn.Parameter(torch.tensor(BONUS), requires_grad=False)
      self.encoder = IdEncoder()
      self.calls = 0

    def get_encoder(self):
      return self.encoder

    def forward(self, input_ids=None, decoder_input_ids=None, encoder_outputs=None, **kwargs):
      self.calls += 1
      if self.config.is_encoder_decoder:
        history, row = decoder_input_ids, encoder_outputs.last_hidden_state[:, 0, 0].long()
      else:
        history, row = input_ids, input_ids[:, 0]
      n = history.shape[1]
      key = (history * torch.arange(1, n + 1)).sum(1) % HASH
      logits = self.table[row, n - 1, history[:, -1]] + self.bonus[key]
      return transformers.modeling_outputs.Seq2SeqLMOutput(logits=logits[:, None, :])

  return (TableLM(TableConfig()).eval(),
          TableLM(TableConfig(is_encoder_decoder=True, decoder_start_token_id=PAD)).eval())


@pytest.fixture(scope='module')
def hf_models():
  if transformers is None:
    pytest.skip(MISSING)
  return make_hf_models()


def table_logits_fn(prompt_len, calls):
  """The JAX twin: index 0 feeds the prompt's last token; the cache holds the history (the prompt already in) and
  each row's table."""
  table, bonus, slots = jnp.asarray(TABLE), jnp.asarray(BONUS), jnp.arange(MAX_PROMPT + NEW_TOKENS)

  def logits_fn(tokens, index, cache):
    jax.debug.callback(lambda: calls.append(1))
    position = prompt_len - 1 + index
    fed = cache['fed'].at[:, position].set(tokens)
    key = jnp.sum(fed * (slots + 1) * (slots <= position), axis=1) % HASH
    return table[cache['row'], position, tokens] + bonus[key], {**cache, 'fed': fed}

  return logits_fn


_COMPILED = {}


def ours(prompts, alpha, search=decode.hf_beam_search, rows=None):
  """(sequences[B, BEAMS, NEW_TOKENS], scores[B, BEAMS], logits_fn calls) after `prompts` [B, P] (decoder-only;
  their first tokens pick the tables unless `rows` does). One compile per prompt length, alpha and search."""
  prompt_len = prompts.shape[1]
  key = (prompt_len, alpha, search)
  if key not in _COMPILED:
    calls = []
    run = jax.jit(lambda cache, start: search(table_logits_fn(prompt_len, calls), cache, start, num_beams=BEAMS,
                                              max_new_tokens=NEW_TOKENS, eos_id=EOS, alpha=alpha, pad_id=PAD))
    _COMPILED[key] = run, calls
  run, calls = _COMPILED[key]
  calls.clear()
  fed = np.zeros((len(prompts), MAX_PROMPT + NEW_TOKENS), np.int32)
  fed[:, :prompt_len] = prompts
  cache = {'fed': jnp.asarray(fed), 'row': jnp.asarray(prompts[:, 0] if rows is None else rows)}
  seqs, scores = run(cache, jnp.asarray(prompts[:, -1]))
  jax.effects_barrier()
  return np.asarray(seqs), np.asarray(scores), len(calls)


def hugging_face(model, prompts, alpha):
  """generate's beams as ours lays them out (the tokens after the prompt, PAD after an EOS), their scores, and
  how many forward passes it made. An encoder-decoder's `prompts` are its encoder inputs; its decoder prompt is
  the start token, which max_length counts."""
  prompt_len = 1 if model.config.is_encoder_decoder else prompts.shape[1]
  model.calls = 0
  with torch.no_grad():
    out = model.generate(torch.tensor(prompts), num_beams=BEAMS, num_return_sequences=BEAMS,
                         max_length=prompt_len + NEW_TOKENS, length_penalty=alpha, early_stopping=False,
                         do_sample=False, eos_token_id=EOS, pad_token_id=PAD, use_cache=False, output_scores=True,
                         return_dict_in_generate=True)
  generated = out.sequences[:, prompt_len:].numpy()
  seqs = np.full((len(generated), NEW_TOKENS), PAD)
  for row, tokens in zip(seqs, generated.tolist()):
    tokens = tokens[:tokens.index(EOS) + 1] if EOS in tokens else tokens
    row[:len(tokens)] = tokens  # HF fills after the EOS with pad_token_id, or EOS when that is 0 (T5's).
  return seqs.reshape(-1, BEAMS, NEW_TOKENS), out.sequences_scores.numpy().reshape(-1, BEAMS), model.calls


def prompts_of(prompt_len, first=FIRST, seed=1):
  rest = np.random.default_rng(seed).integers(2, VOCAB, size=(len(first), prompt_len - 1))  # No PAD, no EOS.
  return np.concatenate([np.asarray(first)[:, None], rest], axis=1).astype(np.int32)


def lengths(seqs):
  """Each hypothesis' generated length, EOS included, and whether it ended in EOS."""
  has_eos = (seqs == EOS).any(-1)
  return np.where(has_eos, np.argmax(seqs == EOS, axis=-1) + 1, NEW_TOKENS), has_eos


@pytest.mark.parametrize('alpha,prompt_len', [(1.0, 1), (0.0, 1), (2.0, 1), (1.0, 3), (-0.5, 3)])
def test_the_same_beams_and_scores_as_generate(hf_models, alpha, prompt_len):
  """30 rows, each its own table: every beam (not only the best) and its score as generate returns them."""
  prompts = prompts_of(prompt_len)
  seqs, scores, _ = ours(prompts, alpha)
  hf_seqs, hf_scores, _ = hugging_face(hf_models[0], prompts, alpha)
  for row in range(ROWS):
    np.testing.assert_array_equal(seqs[row], hf_seqs[row], err_msg=f'row {row} (first token {prompts[row, 0]})')
  np.testing.assert_allclose(scores, hf_scores, rtol=1e-5, atol=1e-6)
  # The batch exercises what it should: hypotheses that end in EOS at many lengths and some at max_length.
  n, has_eos = lengths(seqs)
  assert len(set(n[has_eos].tolist())) >= 6 and (~has_eos).sum() >= 10, (n, has_eos)


def test_an_encoder_decoder_as_generate(hf_models):
  """T5's setting: the decoder starts from token 0 (PAD) and the encoder's input picks the table."""
  inputs = prompts_of(2)
  seqs, scores, _ = ours(np.full((ROWS, 1), PAD, np.int32), 1.0, rows=inputs[:, 0])
  hf_seqs, hf_scores, _ = hugging_face(hf_models[1], inputs, 1.0)
  np.testing.assert_array_equal(seqs, hf_seqs)
  np.testing.assert_allclose(scores, hf_scores, rtol=1e-5, atol=1e-6)


def test_stops_when_generate_stops(hf_models):
  """Rows that mostly emit EOS: the early-stop heuristic ends both loops at the same step, before max_length."""
  eos_prone = np.flatnonzero(EOS_BIAS > 4.0)
  for alpha in (0.0, 1.0, 2.0):
    prompts = prompts_of(1, first=eos_prone[np.arange(ROWS) % len(eos_prone)])
    seqs, scores, calls = ours(prompts, alpha)
    hf_seqs, hf_scores, hf_calls = hugging_face(hf_models[0], prompts, alpha)
    np.testing.assert_array_equal(seqs, hf_seqs)
    np.testing.assert_allclose(scores, hf_scores, rtol=1e-5, atol=1e-6)
    assert calls == hf_calls < NEW_TOKENS, (calls, hf_calls)


def test_the_conventions_differ_on_these_cases(hf_models):
  """t5x's rules give other beams on the same batch even where the length penalties agree (1 at alpha 0), so the
  comparisons above tell the two apart."""
  prompts = prompts_of(1)
  hf_seqs, _, _ = hugging_face(hf_models[0], prompts, 0.0)
  t5x_seqs, _, _ = ours(prompts, 0.0, search=decode.beam_search)
  differing = [row for row in range(ROWS) if not np.array_equal(t5x_seqs[row], hf_seqs[row])]
  assert len(differing) >= 5, differing
