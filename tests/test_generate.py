"""The one generation path: `generate.predict` on strings over both model families (greedy, sampling, beam
search), `continue_text` and `text`, on tiny randomly initialised models."""
import os
import subprocess
import sys

from conftest import ALPHABET
from conftest import random_model
import jax
import numpy as np
import pytest

from experiments import base
from lm import decode
from lm import generate
from lm import optim
from lm import rundir
from lm import step as step_lib
from lm import tokenizers

TEXTS = ['the cat sat.', 'a much longer input, so that it pads to another length than the others: 123 456 789',
         'x', 'summaries of 42 words']


def decode_config(**overrides):
  c = base.get_config().decode
  c.update({'max_decode_len': 12, **overrides})
  return c


def predict(model, params, tokenizer, texts, decode_config, *, max_input_len=512, **kwargs):
  return generate.predict(model, params, tokenizer, texts, generate.Decoding.from_config(decode_config),
                          max_input_len=max_input_len, **kwargs)


@pytest.mark.parametrize('num_beams', [1, 4])
def test_predict_gives_text_without_special_tokens_within_the_length(seq2seq, num_beams):
  tokenizer, model, params = seq2seq
  config = decode_config(num_beams=num_beams)
  got = predict(model, params, tokenizer, TEXTS, config, prefix='summarize: ')
  assert len(got) == len(TEXTS) and all(isinstance(p, str) for p in got)
  assert all(len(tokenizer.encode(p)) <= config.max_decode_len for p in got), got  # Char: a token per char.
  assert all(set(p) <= set(ALPHABET) for p in got), got  # pad and EOS decode to '': check the ids too, below.
  assert len(set(got)) > 1, f'the random model predicts the same for every input: {got}'
  assert got == predict(model, params, tokenizer, TEXTS, config, prefix='summarize: ')  # Deterministic.


@pytest.mark.parametrize('num_beams', [1, 4])
def test_prediction_does_not_depend_on_its_batch(seq2seq, num_beams):
  # Alone, the short input pads to 16 tokens; in a batch with the long one, to 128. (Filling a batch with copies
  # is checked by test_evaluate_generation_scores_and_records_with_the_lead_baseline.)
  tokenizer, model, params = seq2seq
  config = decode_config(num_beams=num_beams)
  long, short = TEXTS[1], TEXTS[0]
  together = predict(model, params, tokenizer, [long, short], config)
  assert together[1] == predict(model, params, tokenizer, [short], config)[0]
  assert together[0] != together[1]


def test_decode_beam_convention_selects_the_search(seq2seq, monkeypatch):
  tokenizer, model, params = seq2seq
  called = []

  def spy(name):
    search = decode.BEAM_SEARCHES[name]
    return lambda *args, **kwargs: called.append(name) or search(*args, **kwargs)

  monkeypatch.setattr(decode, 'BEAM_SEARCHES', {name: spy(name) for name in decode.BEAM_SEARCHES})
  config = decode_config(num_beams=4, beam_convention='hf', alpha=-0.5, max_decode_len=7)  # 'hf' takes alpha < 0.
  got = predict(model, params, tokenizer, TEXTS[:1], config)
  assert called == ['hf'] and len(tokenizer.encode(got[0])) <= 7, (called, got)


def test_inputs_are_truncated_to_max_input_len(seq2seq):
  # Only the first max_input_len tokens (prefix and EOS included) are read: what follows cannot matter.
  tokenizer, model, params = seq2seq
  config = decode_config(num_beams=1)
  long = 'abcdefghijklmnop'
  assert (predict(model, params, tokenizer, [long + 'one ending'], config, max_input_len=10)
          == predict(model, params, tokenizer, [long + 'another'], config, max_input_len=10))
  # The control: read whole, the endings do change the prediction.
  whole = predict(model, params, tokenizer, [long + 'one ending', long + 'another'], config, max_input_len=512)
  assert whole[0] != whole[1], whole


def test_text_stops_at_eos_and_skips_special_tokens():
  class Sentinels:  # SentencePiece's layout: pad 0, eos 1, unk 2, pieces, then sentinels at the top.
    pad_id, eos_id, unk_id, vocab_size, num_sentinels = 0, 1, 2, 10, 3

    def decode(self, ids):
      return ' '.join(map(str, ids))

  assert generate.text(Sentinels(), np.array([3, 0, 2, 4, 8, 5, 1, 6, 1])) == '3 4 5'  # 8: a sentinel.
  assert generate.text(Sentinels(), np.array([6, 12, 5])) == '6 5'  # 12: past the tokenizer's vocabulary.
  char = tokenizers.make_tokenizer('char', ['ab'])
  a, b = char.encode('ab')
  assert generate.text(char, np.array([a, b, char.pad_id, a, char.eos_id, b, b])) == 'aba'


def greedy_without_cache(model, params, prompts, num_tokens, eos_id):
  """Greedy continuations of each prompt (a list of ids), running the model on the whole sequence at every step.

  Rows are right-padded to model.max_len: causal attention keeps the padding out of the positions read."""
  forward = jax.jit(lambda tokens: model.apply({'params': params}, tokens))
  rows, new = [list(p) for p in prompts], [[] for _ in prompts]
  for _ in range(num_tokens):
    tokens = np.zeros((len(rows), model.config.max_len), np.int32)
    for r, row in enumerate(rows):
      tokens[r, :len(row)] = row
    logits = np.asarray(forward(tokens))
    for r, row in enumerate(rows):
      if eos_id not in new[r]:
        row.append(int(logits[r, len(row) - 1].argmax()))
        new[r].append(row[-1])
  return new


def test_decoder_only_continues_with_the_kv_cache():
  tokenizer, model, params = random_model('decoder_only', position='learned', max_len=32)
  config = decode_config(num_beams=1)
  assert config.temperature == 0  # Greedy.
  got = predict(model, params, tokenizer, TEXTS, config, batch_size=3)
  assert all(len(p) <= 12 and set(p) <= set(ALPHABET) for p in got), got
  assert got == [predict(model, params, tokenizer, [text], config)[0] for text in TEXTS]
  # The same as a loop without a cache: EOS + the text, its last 32 - 12 = 20 tokens, continued by 12 tokens;
  # the text stops before EOS, and leaves out the pad token.
  prompts = [np.concatenate([[tokenizer.eos_id], tokenizer.encode(text)])[-20:] for text in TEXTS]
  new = greedy_without_cache(model, params, prompts, 12, tokenizer.eos_id)
  assert got == [tokenizer.decode([i for i in ids if i not in (tokenizer.pad_id, tokenizer.eos_id)]) for ids in new]
  assert len(set(got)) > 1, f'the prompt does not change the output: {got}'
  with pytest.raises(ValueError, match='needs an encoder-decoder model for beam search'):
    predict(model, params, tokenizer, TEXTS, decode_config(num_beams=4))
  with pytest.raises(ValueError, match='no room for a prompt'):
    predict(model, params, tokenizer, TEXTS, decode_config(num_beams=1, max_decode_len=32))


@pytest.mark.parametrize('position', ['learned', 'rope', 'relative'])
def test_a_prefilled_prompt_continues_as_one_fed_token_by_token(position):
  """generate's prefill writes the whole padded prompt in one pass and restarts the loop at its shortest row; the
  loop alone feeds every prompt token. Rows of three lengths, greedy and sampled: the same tokens."""
  _, model, params = random_model('decoder_only', position=position, max_len=32)
  prompt = np.array(jax.random.randint(jax.random.PRNGKey(1), (3, 9), 3, 20), np.int32)
  lengths = np.array([9, 5, 7], np.int32)  # Positions 0-3 only from the prefill.
  for temperature in (0.0, 1.0):
    runs = []
    for prefill_fn in (None, model.make_prefill_fn(params)):
      cache = model.init_decode_cache(params, 3, 9 + 12)
      runs.append(decode.temperature_sample(model.make_logits_fn(params), cache, prompt, lengths, num_new_tokens=12,
                                            rng=jax.random.PRNGKey(0), temperature=temperature,
                                            prefill_fn=prefill_fn))
    np.testing.assert_array_equal(runs[0][0], runs[1][0])
    np.testing.assert_array_equal(runs[0][1], runs[1][1])
    assert len({tuple(row) for row in np.asarray(runs[0][0])}) == 3, 'the rows continue alike: a weak check'


def test_importing_generate_does_not_import_the_data_stack():
  code = ('import sys, lm.generate; bad = [m for m in ("tensorflow_datasets", "grain", "tensorflow") '
          'if m in sys.modules]; assert not bad, bad')
  subprocess.run([sys.executable, '-c', code], check=True, cwd=os.path.dirname(os.path.dirname(__file__)))


class DigitTokenizer:
  """'0'..'9' <-> ids 0..9; eos is 1 (so a greedy model may stop early, as a real one does)."""
  eos_id = 1

  def encode(self, text):
    return np.array([int(ch) for ch in text], np.int32)

  def decode(self, ids):
    return ''.join(str(int(i)) for i in ids)


def test_generate_slides_its_cached_window_like_a_full_forward_pass():
  """The KV-cache sampler in chunks of n = max_len // 2 tokens, each reading the last max_len - n tokens,
  against greedy decoding by the full forward pass over the same contexts."""
  c = base.get_config()
  c.model.update(num_layers=2, d_model=32, num_heads=4, max_len=8)
  c.data.seq_len = 8
  model = rundir.build_model(c, vocab_size=10)
  params = step_lib.init_state(model, optim.make_optimizer(c.train), jax.random.PRNGKey(3), seq_len=8).params
  prompt, num_tokens, n = '908070', 11, 4  # The prompt is longer than the window of 4: only its end is read.
  text = generate.continue_text(model, params, DigitTokenizer(), prompt, num_tokens=num_tokens, temperature=0.0)
  forward = jax.jit(lambda tokens: model.apply({'params': params}, tokens))  # A compile per context length.
  new = []
  while len(new) < num_tokens:
    chunk = len(new) // n
    ids = [int(ch) for ch in prompt] + new
    context = ids[:len(prompt) + chunk * n][-(8 - n):] + new[chunk * n:]
    token = int(np.argmax(forward(np.array([context]))[0, -1]))
    if token == DigitTokenizer.eos_id:
      break
    new.append(token)
  assert text == prompt + ''.join(map(str, new))
  assert len(new) > n, 'the greedy continuation stopped before a second chunk; pick another seed'
