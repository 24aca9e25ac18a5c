"""The one generation path: a jitted, fixed-shape `generate` over `lm/decode.py`'s searches, and `predict` on
strings. Every caller goes through it: the end-of-training sample, `./run.sh sample`, the generation eval and
`summarize` / `translate` / `answer`.
"""
from __future__ import annotations

from collections.abc import Sequence
import functools
import typing
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lm import config as config_lib
from lm import decode
from lm import errors
from lm import model as model_lib
from lm import tokenizers
from lm.data import tasks

_MIN_PADDED_LEN = 16  # Inputs pad to a power of two at least this long: few shapes, few compilations.
# An encoder-decoder's sample (end of training, `./run.sh sample` without a prompt): this many validation inputs.
NUM_SAMPLE_EXAMPLES = 4


class Decoding(typing.NamedTuple):
  """The search, as config.decode's keys say: hashable, so it is the static part of the compiled `generate`."""
  num_beams: int = 1
  max_decode_len: int = 50
  beam_convention: str = 't5x'
  alpha: float = 0.0
  temperature: float = 0.0
  top_k: int = 0
  top_p: float = 1.0

  @classmethod
  def from_config(cls, decode_config: Any) -> 'Decoding':
    """Decoding's settings of config.decode (checked)."""
    config_lib.check_decode(decode_config)
    g = decode_config
    return cls(num_beams=int(g.num_beams), max_decode_len=int(g.max_decode_len),
               beam_convention=str(g.beam_convention), alpha=float(g.alpha), temperature=float(g.temperature),
               top_k=int(g.top_k), top_p=float(g.top_p))


@functools.partial(jax.jit, static_argnames=('model', 's', 'eos_id'))
def generate(params: Any, tokens: jax.Array, lengths: jax.Array, rng: jax.Array, *, model: Any, s: Decoding,
             eos_id: int) -> jax.Array:
  """Generated ids [B, s.max_decode_len] (an EOS kept, then padding) for right-padded inputs `tokens[B, L]` of
  `lengths[B]` tokens: an encoder-decoder's inputs, or a decoder-only model's prompts (the continuation follows
  the prompt in one KV cache of L + max_decode_len positions)."""
  if isinstance(model, model_lib.EncoderDecoder):
    segment_ids = (jnp.arange(tokens.shape[1]) < lengths[:, None]).astype(jnp.int32)  # 0 masks the padding.
    cache, encoded = model.encode_for_decoding(params, tokens, segment_ids, s.max_decode_len)
    start = jnp.zeros(tokens.shape[0], jnp.int32)  # T5's decoder start token: 0, the pad id.
    if s.num_beams > 1:
      logits_fn = model.make_logits_fn(params, decode.expand_beams(encoded, s.num_beams))
      search = decode.BEAM_SEARCHES[s.beam_convention]
      sequences, _ = search(logits_fn, cache, start, num_beams=s.num_beams, max_new_tokens=s.max_decode_len,
                            eos_id=eos_id, alpha=s.alpha)
      return sequences[:, 0]
    logits_fn, prefill_fn = model.make_logits_fn(params, encoded), None
    prompt, lengths = start[:, None], jnp.ones_like(lengths)
  else:  # The prompt enters the cache in one pass (up to its shortest row), then the continuation follows.
    logits_fn, prefill_fn = model.make_logits_fn(params), model.make_prefill_fn(params)
    cache = model.init_decode_cache(params, tokens.shape[0], tokens.shape[1] + s.max_decode_len)
    prompt = tokens
  new_tokens, _ = decode.temperature_sample(
      logits_fn, cache, prompt, lengths, num_new_tokens=s.max_decode_len, rng=rng, temperature=s.temperature,
      top_k=s.top_k, top_p=s.top_p, eos_id=eos_id, prefill_fn=prefill_fn)
  return new_tokens


def input_limit(model: Any, s: Decoding, max_input_len: int) -> int:
  """Most input tokens per example. Learned position tables bound the lengths to model.max_len; a decoder-only
  model holds its prompt and the generated tokens in one KV cache."""
  c = model.config
  bounded = c.position == 'learned'
  if isinstance(model, model_lib.EncoderDecoder):
    config_lib.check(not bounded or s.max_decode_len <= c.max_len, 'decode.max_decode_len', s.max_decode_len,
                     f'exceeds the learned decoder positions (model.max_len={c.max_len})')
    return min(max_input_len, c.max_len) if bounded else max_input_len
  config_lib.check(s.num_beams == 1, 'decode.num_beams', s.num_beams,
                   'needs an encoder-decoder model for beam search; use --config.decode.num_beams=1 with a '
                   'decoder-only model')
  room = c.max_len - s.max_decode_len
  config_lib.check(not bounded or room >= 1, 'decode.max_decode_len', s.max_decode_len,
                   f'leaves no room for a prompt within model.max_len={c.max_len}')
  return min(max_input_len, room) if bounded else max_input_len


def text(tokenizer: Any, ids: np.ndarray) -> str:
  """Generated ids as text: up to the first EOS, without special tokens (pad, unknown, sentinels, and ids
  past the tokenizer's vocabulary, which a model's padded vocabulary can produce)."""
  ids = np.asarray(ids)
  (eos,) = np.nonzero(ids == tokenizer.eos_id)
  ids = ids[:eos[0]] if eos.size else ids
  special = [tokenizer.pad_id] + ([tokenizer.unk_id] if hasattr(tokenizer, 'unk_id') else [])
  keep = (ids < tokenizer.vocab_size - tokenizer.num_sentinels) & ~np.isin(ids, special)
  return tokenizer.decode(ids[keep])


def _padded_len(length: int, limit: int) -> int:
  return min(limit, max(_MIN_PADDED_LEN, 1 << (length - 1).bit_length()))


def predict(model: Any, params: Any, tokenizer: Any, inputs: Sequence[str], s: Decoding, *, max_input_len: int,
            prefix: str = '', batch_size: int = 8, seed: int = 0) -> list[str]:
  """The generated text for each of `inputs`: beam search, or when s.num_beams is 1 sampling (greedy at
  temperature 0).

  Encoder-decoder: the encoder reads prefix + text + EOS cut to `max_input_len` tokens (as the seq2seq pipeline
  builds its inputs); the decoder starts from token 0. Decoder-only: EOS + prefix + text (EOS: a new document
  starts) is continued, keeping its last tokens if it is too long. Inputs are sorted by length and padded to
  power-of-two lengths and to `batch_size` rows (copies of a real input), so each shape compiles once; the
  padding is masked, so a greedy or beam-search prediction does not depend on its batch (a sample does: each
  batch has its own key from `seed`). The text stops before the first EOS and leaves out special tokens (as
  Hugging Face's skip_special_tokens).
  """
  if isinstance(inputs, str):
    raise TypeError(f'inputs must be a sequence of strings, got one string: {inputs[:50]!r}')
  limit = input_limit(model, s, max_input_len)

  def encode(text: str) -> np.ndarray:
    try:
      return tokenizer.encode(prefix + text)
    except ValueError as e:  # E.g. a char vocabulary without the letters of a T5 prefix.
      raise errors.InputError(f'cannot encode the prefix {prefix!r} + the input {text[:50]!r}: {e}') from None

  eos = np.array([tokenizer.eos_id], np.int32)
  if isinstance(model, model_lib.EncoderDecoder):
    ids = [np.concatenate([encode(text), eos])[:limit] for text in inputs]
  else:
    ids = [np.concatenate([eos, encode(text)])[-limit:] for text in inputs]
  order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))  # Similar lengths share a batch.
  rows = max(1, min(batch_size, len(ids)))
  rng = jax.random.PRNGKey(seed)
  predictions = [''] * len(ids)
  for b, start in enumerate(range(0, len(ids), rows)):
    chosen = order[start:start + rows]
    chosen += chosen[-1:] * (rows - len(chosen))  # Fill the batch with copies; their outputs are dropped.
    tokens = np.zeros((rows, _padded_len(len(ids[chosen[0]]), limit)), np.int32)
    for r, i in enumerate(chosen):
      tokens[r, :len(ids[i])] = ids[i]
    lengths = np.array([len(ids[i]) for i in chosen], np.int32)
    generated = np.asarray(generate(params, tokens, lengths, jax.random.fold_in(rng, b), model=model, s=s,
                                    eos_id=tokenizer.eos_id))
    for r, i in enumerate(order[start:start + rows]):
      predictions[i] = text(tokenizer, generated[r])
  return predictions


def continue_text(model: Any, params: Any, tokenizer: Any, prompt: str, *, num_tokens: int, temperature: float,
                  top_k: int = 0, seed: int = 0) -> str:
  """The prompt followed by a sampled continuation of up to `num_tokens` tokens (fewer if it samples EOS), from
  a decoder-only model. An empty prompt starts a new document (after an EOS).

  Decoding runs on a KV cache of model.config.max_len positions, in chunks of n = min(num_tokens, max_len // 2)
  new tokens: each chunk reads the last max_len - n tokens of the text so far into a fresh cache, so a long
  continuation slides its context window by n tokens at a time. Every chunk has the same shapes: one compile.
  """
  start = tokenizers.document_start(tokenizer)  # Llama's bos, as transformers' tokenizer(prompt) gives it.
  context = start + [int(t) for t in tokenizer.encode(prompt)] if prompt else [tokenizer.eos_id] + start
  if num_tokens <= 0:
    return prompt
  max_len = model.config.max_len
  n = min(num_tokens, max(max_len // 2, 1))
  window = max_len - n
  config_lib.check(window >= 1, 'model.max_len', max_len, 'leaves no room for a prompt; sampling needs >= 2')
  s = Decoding(max_decode_len=n, temperature=temperature, top_k=top_k)
  rng, new = jax.random.PRNGKey(seed), []
  for chunk in range(-(-num_tokens // n)):
    recent = (context + new)[-window:]
    prompt_ids = np.zeros((1, window), np.int32)
    prompt_ids[0, :len(recent)] = recent
    tokens = jax.device_get(generate(params, prompt_ids, np.array([len(recent)], np.int32),
                                     jax.random.fold_in(rng, chunk), model=model, s=s, eos_id=tokenizer.eos_id))
    tokens = [int(t) for t in tokens[0]]
    if tokenizer.eos_id in tokens:
      new += tokens[:tokens.index(tokenizer.eos_id)]
      break
    new += tokens
  return prompt + tokenizer.decode(np.asarray(new[:num_tokens], np.int32))


def sample(model: Any, params: Any, tokenizer: Any, config: Any, *, prompt: str | None = None,
           pairs: Sequence[tuple[str, str]] = (), num_tokens: int | None = None, temperature: float | None = None,
           top_k: int | None = None, seed: int | None = None) -> str:
  """A run's sample, with config.decode's sample_* settings where an argument is None.

  Decoder-only: `prompt` (None: decode.sample_prompt) and its continuation. Encoder-decoder: with a prompt, its
  prediction (data.prefix in front; greedy unless `temperature` is given, up to data.max_target_len tokens);
  without, one `input -> prediction (target)` line per (input, target) of `pairs`, greedy.
  """
  g, data = config.decode, config.data
  pick = lambda value, default: default if value is None else value
  seed = pick(seed, config.seed)
  if not isinstance(model, model_lib.EncoderDecoder):
    return continue_text(model, params, tokenizer, pick(prompt, g.sample_prompt),
                         num_tokens=pick(num_tokens, g.sample_num_tokens),
                         temperature=pick(temperature, g.sample_temperature), top_k=pick(top_k, g.sample_top_k),
                         seed=seed)
  s = Decoding(max_decode_len=pick(num_tokens, data.max_target_len), temperature=pick(temperature, 0.0),
               top_k=pick(top_k, g.sample_top_k))
  inputs = [prompt] if prompt is not None else [x for x, _ in pairs]
  predictions = predict(model, params, tokenizer, [tasks.model_input(x, data) for x in inputs], s,
                        max_input_len=data.max_input_len, prefix=data.prefix, batch_size=len(inputs), seed=seed)
  if prompt is not None:
    return predictions[0]
  return '\n'.join(f'{x!r} -> {p!r} ({y!r})' for (x, y), p in zip(pairs, predictions))
