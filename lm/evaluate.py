"""Task evaluation: string metrics as papers report them, the lead-sentence summarization baseline, and
generation-based evaluation of a model (decode a split, score it) for training and the command line.

The metrics take decoded strings (predictions[i] against references[i]) and return {name: float} on a 0-100
scale, so configs can name them by string through `METRICS` (`config.eval.metrics`). Importing this module must
not import tensorflow_datasets or grain: the functions that read a split or a run directory import `lm.data` and
`lm.train` when called.
"""
from collections.abc import Callable, Sequence
import functools
import json
import os
import re
import typing
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from rouge_score import rouge_scorer
import sacrebleu

from lm import decode
from lm import model as model_lib
from lm.data import tasks

# Metrics ---------------------------------------------------------------------------------------------------

ROUGE_TYPES = ('rouge1', 'rouge2', 'rougeL')  # Not rougeLsum: it splits sentences with nltk punkt, a download.


def _check_pairs(predictions: Sequence[str], references: Sequence[str]) -> None:
  """Fail fast on inputs that would silently give a wrong score."""
  for name, value in (('predictions', predictions), ('references', references)):
    if isinstance(value, str):  # A str is a Sequence[str] of characters: it would be scored char by char.
      raise TypeError(f'{name} must be a sequence of strings, got one string: {value[:50]!r}')
  if len(predictions) != len(references):
    raise ValueError(f'{len(predictions)} predictions but {len(references)} references')
  if not predictions:
    raise ValueError('0 predictions and 0 references: a metric over no examples is undefined')


def rouge_per_example(predictions: Sequence[str], references: Sequence[str]) -> dict[str, np.ndarray]:
  """ROUGE-1/2/L F-measure x100 of each (prediction, reference) pair: float64 [n] per type.

  rouge_score lowercases, keeps only [a-z0-9]+ tokens and Porter-stems them: text in other scripts scores 0.
  """
  _check_pairs(predictions, references)
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  scores = [scorer.score(target=r, prediction=p) for p, r in zip(predictions, references)]
  return {t: 100 * np.array([s[t].fmeasure for s in scores]) for t in ROUGE_TYPES}


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Mean per-example ROUGE-1/2/L F-measure x100, as t5.evaluation.metrics.rouge reports it."""
  return {t: float(np.mean(v)) for t, v in rouge_per_example(predictions, references).items()}


def paired_bootstrap_interval(a: np.ndarray, b: np.ndarray, *, samples: int = 10_000,
                              seed: int = 0) -> tuple[float, float]:
  """95% interval of mean(a - b) over `samples` resamplings of the examples (paired: one index draws both)."""
  diff = np.asarray(a, np.float64) - np.asarray(b, np.float64)
  rng = np.random.default_rng(seed)
  # In chunks of 1000 resamplings: all at once, 11k CNN/DailyMail test pairs would index with 0.9 GB.
  means = np.concatenate([diff[rng.integers(0, len(diff), (min(1000, samples - start), len(diff)))].mean(axis=1)
                          for start in range(0, samples, 1000)])
  low, high = np.percentile(means, [2.5, 97.5])
  return float(low), float(high)


def bleu(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Corpus BLEU with one reference per prediction, on sacreBLEU's defaults (13a tokenizer, exp smoothing).

  Corpus-level: n-gram counts and lengths are summed over all examples before the precisions and the
  brevity penalty, so it is not the mean of sentence BLEUs. A corpus with no 4-gram at all (every prediction
  under 4 tokens) scores 0 even when identical to its references: use exact_match for short answers.
  """
  _check_pairs(predictions, references)
  return {'bleu': float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score)}


def exact_match(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Percent of predictions equal to their reference after stripping surrounding whitespace."""
  _check_pairs(predictions, references)
  return {'exact_match': 100 * float(np.mean([p.strip() == r.strip() for p, r in zip(predictions, references)]))}


_SENTENCE_END = re.compile(r'[.!?](?=\s|$)')


def lead_sentence(text: str) -> str:
  """The first sentence of `text`: the "lead" baseline for summarization.

  The rule: strip, keep the first line, and cut it after the first '.', '!' or '?' that is followed by
  whitespace or the end of the line, keeping that mark; a text without one is its whole first line. No
  abbreviation handling: 'Dr. Smith came.' gives 'Dr.'.
    lead_sentence('\\n\\nIs it? Yes.') == 'Is it?'
    lead_sentence('Title\\nBody. More.') == 'Title'
  """
  line = text.strip().partition('\n')[0].strip()
  end = _SENTENCE_END.search(line)
  return line[:end.end()] if end else line


METRICS: dict[str, Callable[[Sequence[str], Sequence[str]], dict[str, float]]] = {
    'rouge': rouge,
    'bleu': bleu,
    'exact_match': exact_match,
}


# Validation of config.eval and config.decode ----------------------------------------------------------------


def _decode_checks(g: ml_collections.ConfigDict) -> list[tuple[bool, str, Any, str]]:
  return [
      (g.num_beams >= 1, 'decode.num_beams', g.num_beams, 'must be >= 1 (1: sampling, greedy at temperature 0)'),
      (g.max_decode_len >= 1, 'decode.max_decode_len', g.max_decode_len, 'must be >= 1'),
      (g.alpha >= 0, 'decode.alpha', g.alpha, 'must be >= 0'),
      (g.temperature >= 0, 'decode.temperature', g.temperature, 'must be >= 0 (0 is greedy)'),
      (g.top_k >= 0, 'decode.top_k', g.top_k, 'must be >= 0 (0 disables)'),
      (0 < g.top_p <= 1, 'decode.top_p', g.top_p, 'must be in (0, 1] (1 disables)'),
      (g.max_input_len >= 1, 'decode.max_input_len', g.max_input_len, 'must be >= 1'),
  ]


def _raise_failed(checks: list[tuple[bool, str, Any, str]]) -> None:
  for ok, key, value, why in checks:
    if not ok:
      raise ValueError(f'{key}={value!r} {why}')


def validate_eval_config(config: ml_collections.ConfigDict) -> None:
  """Fails before any work on a bad `config.eval` or `config.decode` value, naming the key and the value."""
  from lm.data import datasets  # Imports tensorflow_datasets.
  for section in ('eval', 'decode'):
    if section not in config:
      raise ValueError(f'the config has no {section!r} section (a run directory from before it existed?): pass '
                       '--config=experiments/<its experiment>.py')
  e = config.eval
  metrics = e.metrics
  checks = [
      (e.split in datasets.SPLITS, 'eval.split', e.split, f'must be one of {datasets.SPLITS}'),
      (isinstance(metrics, (tuple, list)) and all(m in METRICS for m in metrics), 'eval.metrics', metrics,
       f"must be a tuple of names out of {tuple(METRICS)}, e.g. ('rouge',)"),
      (not metrics or config.data.task == 'seq2seq', 'eval.metrics', metrics,
       f"needs data.task='seq2seq' (pairs of input and target text), got data.task={config.data.task!r}"),
      (e.every_steps == 0 or (e.every_steps > 0 and config.train.eval_every > 0
                              and e.every_steps % config.train.eval_every == 0), 'eval.every_steps', e.every_steps,
       f'must be 0 or a multiple of train.eval_every ({config.train.eval_every}): generation eval runs at '
       'validation points'),
      (e.num_examples >= 0, 'eval.num_examples', e.num_examples, 'must be >= 0 (0: the whole split)'),
      (e.batch_size >= 1, 'eval.batch_size', e.batch_size, 'must be >= 1'),
  ]
  _raise_failed(checks + _decode_checks(config.decode))


# Generation ------------------------------------------------------------------------------------------------

# Prefixes of T5's multi-task mixture, used by the command line when the run's data.prefix is empty.
TASK_PREFIXES = {'summarize': 'summarize: ', 'translate': 'translate English to German: ', 'answer': ''}
NUM_SHOWN_EXAMPLES = 5  # Examples kept in eval_<step>.json (predictions_<step>_<split>.jsonl holds them all).
_MIN_PADDED_LEN = 16  # Inputs pad to a power of two at least this long: few shapes, few compilations.


class _Decoding(typing.NamedTuple):
  """config.decode's search settings as a hashable value: the static part of the compiled decoding function."""
  num_beams: int
  max_decode_len: int
  alpha: float
  temperature: float
  top_k: int
  top_p: float


def answer_input(question: str, context: str) -> str:
  """T5's SQuAD input format."""
  return f'question: {question} context: {context}'


def _padded_len(length: int, limit: int) -> int:
  return min(limit, max(_MIN_PADDED_LEN, 1 << (length - 1).bit_length()))


def _input_limit(model: Any, s: _Decoding, max_input_len: int) -> int:
  """Most input tokens per example. Learned position tables bound the lengths to model.max_len; a decoder-only
  model holds its prompt and the generated tokens in one KV cache."""
  c = model.config
  bounded = c.position == 'learned'
  if isinstance(model, model_lib.EncoderDecoder):
    if bounded and s.max_decode_len > c.max_len:
      raise ValueError(f'decode.max_decode_len={s.max_decode_len} exceeds the learned decoder positions '
                       f'(model.max_len={c.max_len})')
    return min(max_input_len, c.max_len) if bounded else max_input_len
  if s.num_beams > 1:
    raise ValueError(f'decode.num_beams={s.num_beams}: beam search needs an encoder-decoder model; use '
                     '--config.decode.num_beams=1 with a decoder-only model')
  room = c.max_len - s.max_decode_len
  if bounded and room < 1:
    raise ValueError(f'decode.max_decode_len={s.max_decode_len} leaves no room for a prompt within '
                     f'model.max_len={c.max_len}')
  return min(max_input_len, room) if bounded else max_input_len


@functools.partial(jax.jit, static_argnames=('model', 's', 'eos_id'))
def _generate(params: Any, tokens: jax.Array, lengths: jax.Array, rng: jax.Array, *, model: Any, s: _Decoding,
              eos_id: int) -> jax.Array:
  """Generated ids [B, max_decode_len] for right-padded inputs `tokens[B, L]` of `lengths[B]` tokens."""
  if isinstance(model, model_lib.EncoderDecoder):
    segment_ids = (jnp.arange(tokens.shape[1]) < lengths[:, None]).astype(jnp.int32)  # 0 masks the padding.
    cache, encoded = model.encode_for_decoding(params, tokens, segment_ids, s.max_decode_len)
    start = jnp.zeros(tokens.shape[0], jnp.int32)  # T5's decoder start token: 0, the pad id.
    if s.num_beams > 1:
      logits_fn = model.make_logits_fn(params, decode.expand_beams(encoded, s.num_beams))
      sequences, _ = decode.beam_search(logits_fn, cache, start, num_beams=s.num_beams,
                                        max_new_tokens=s.max_decode_len, eos_id=eos_id, alpha=s.alpha)
      return sequences[:, 0]
    logits_fn = model.make_logits_fn(params, encoded)
    prompt, lengths = start[:, None], jnp.ones_like(lengths)
  else:  # The prompt enters the cache one token per step, then the continuation follows.
    logits_fn = model.make_logits_fn(params)
    cache = model.init_decode_cache(params, tokens.shape[0], tokens.shape[1] + s.max_decode_len)
    prompt = tokens
  new_tokens, _ = decode.temperature_sample(
      logits_fn, cache, prompt, lengths, num_new_tokens=s.max_decode_len, rng=rng, temperature=s.temperature,
      top_k=s.top_k, top_p=s.top_p, eos_id=eos_id)
  return new_tokens


def _text(tokenizer: Any, ids: np.ndarray) -> str:
  """Generated ids as text: up to the first EOS, without special tokens (pad, unknown, sentinels, and ids
  past the tokenizer's vocabulary, which a model's padded vocabulary can produce)."""
  ids = np.asarray(ids)
  (eos,) = np.nonzero(ids == tokenizer.eos_id)
  ids = ids[:eos[0]] if eos.size else ids
  special = [tokenizer.pad_id] + ([tokenizer.unk_id] if hasattr(tokenizer, 'unk_id') else [])
  keep = (ids < tokenizer.vocab_size - tokenizer.num_sentinels) & ~np.isin(ids, special)
  return tokenizer.decode(ids[keep])


def predict(model: Any, params: Any, tokenizer: Any, inputs: Sequence[str], decode_config: ml_collections.ConfigDict,
            *, prefix: str = '', batch_size: int = 8, seed: int = 0) -> list[str]:
  """The generated text for each of `inputs`, as `decode_config` (config.decode) says: beam search, or when
  num_beams is 1 sampling (greedy at temperature 0).

  Encoder-decoder: the encoder reads prefix + text + EOS cut to decode.max_input_len tokens (as the seq2seq
  pipeline builds its inputs); the decoder starts from token 0. Decoder-only: EOS + prefix + text (EOS: a new
  document starts) is continued, keeping its last tokens if it is too long. Inputs are sorted by length and
  padded to power-of-two lengths and to `batch_size` rows (copies of a real input), so each shape compiles
  once; the padding is masked, so a greedy or beam-search prediction does not depend on its batch (a sample
  does: each batch has its own key from `seed`). The text stops before the first EOS and leaves out special
  tokens (as Hugging Face's skip_special_tokens).
  """
  if isinstance(inputs, str):
    raise TypeError(f'inputs must be a sequence of strings, got one string: {inputs[:50]!r}')
  _raise_failed(_decode_checks(decode_config))
  g = decode_config
  s = _Decoding(num_beams=int(g.num_beams), max_decode_len=int(g.max_decode_len), alpha=float(g.alpha),
                temperature=float(g.temperature), top_k=int(g.top_k), top_p=float(g.top_p))
  limit = _input_limit(model, s, int(g.max_input_len))

  def encode(text: str) -> np.ndarray:
    try:
      return tokenizer.encode(prefix + text)
    except ValueError as e:  # E.g. a char vocabulary without the letters of a T5 prefix.
      raise ValueError(f'cannot encode the prefix {prefix!r} + the input {text[:50]!r}: {e}') from None

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
    generated = np.asarray(_generate(params, tokens, lengths, jax.random.fold_in(rng, b), model=model, s=s,
                                     eos_id=tokenizer.eos_id))
    for r, i in enumerate(order[start:start + rows]):
      predictions[i] = _text(tokenizer, generated[r])
  return predictions


# Evaluation of a split and of a run directory ----------------------------------------------------------------


def _record(workdir: str, step: int, split: str, report: dict) -> str:
  """Merges `report` into eval_<step>.json under `split` (its metrics into the metrics there); returns the path.

  One file per step holds every split scored at it, so scoring the test split keeps the validation results.
  """
  path = os.path.join(workdir, f'eval_{step}.json')
  reports = {}
  if os.path.exists(path):
    with open(path) as f:
      reports = json.load(f)
  entry = reports.setdefault(split, {})
  metrics = {**entry.get('metrics', {}), **report.get('metrics', {})}
  entry.update(report, metrics=metrics)
  with open(path + '.tmp', 'w') as f:
    json.dump(reports, f, indent=2)
  os.replace(path + '.tmp', path)
  return path


def evaluate_generation(config: ml_collections.ConfigDict, model: Any, params: Any, tokenizer: Any, split: str,
                        step: int, *, workdir: str | None = None) -> dict[str, float]:
  """Decodes the inputs of `split` (its first eval.num_examples; 0: all) and scores them against the targets with
  each of eval.metrics; with 'rouge', also the lead-sentence baseline's ROUGE of the inputs (`lead_rouge1`, ...).

  With `workdir`, process 0 records the metrics, the decoding config and the first NUM_SHOWN_EXAMPLES examples
  (input, target, prediction; with 'rouge' also its ROUGE-L, the lead and the lead's ROUGE-L) in
  workdir/eval_<step>.json under `split`, and every example in workdir/predictions_<step>_<split>.jsonl.
  """
  from lm.data import datasets  # Imports tensorflow_datasets.
  pairs = datasets.split_pairs(config.data, split)
  pairs = pairs[:config.eval.num_examples or len(pairs)]
  if not pairs:
    raise ValueError(f'the {split} split of data.name={config.data.name!r} has no examples')
  inputs, targets = [x for x, _ in pairs], [y for _, y in pairs]
  model_inputs = [tasks.model_input(text, config.data) for text in inputs]
  predictions = predict(model, params, tokenizer, model_inputs, config.decode, prefix=config.data.prefix,
                        batch_size=config.eval.batch_size, seed=config.seed)
  metrics = {}
  for name in config.eval.metrics:
    metrics.update(METRICS[name](predictions, targets))
  examples = [{'input': x, 'target': y, 'prediction': p} for x, y, p in zip(inputs, targets, predictions)]
  if 'rouge' in config.eval.metrics:  # What a summary must beat: the input's first sentence, as written.
    leads = [lead_sentence(text) for text in inputs]
    lead = rouge_per_example(leads, targets)
    metrics.update({f'lead_{key}': float(np.mean(value)) for key, value in lead.items()})
    # Is the margin over the lead more than the noise of this many examples? Its paired-bootstrap 95% interval.
    scores = rouge_per_example(predictions, targets)['rougeL']
    low, high = paired_bootstrap_interval(scores, lead['rougeL'])
    metrics.update(lead_margin_rougeL_low=low, lead_margin_rougeL_high=high)
    for example, text, score, lead_score in zip(examples, leads, scores, lead['rougeL']):
      example.update(rougeL=float(score), lead=text, lead_rougeL=float(lead_score))
  if workdir and jax.process_index() == 0:
    _record(workdir, step, split, {'metrics': metrics, 'num_examples': len(pairs), 'prefix': config.data.prefix,
                                   'decode': config.decode.to_dict(), 'examples': examples[:NUM_SHOWN_EXAMPLES]})
    _write_predictions(workdir, step, split, examples)
  return metrics


def _write_predictions(workdir: str, step: int, split: str, examples: list[dict]) -> str:
  """Every example of an evaluation, one JSON object a line, to predictions_<step>_<split>.jsonl: for error
  analysis and notebooks (with 'rouge', each has its ROUGE-L and the lead's). Returns the path."""
  path = os.path.join(workdir, f'predictions_{step}_{split}.jsonl')
  with open(path + '.tmp', 'w') as f:
    f.writelines(json.dumps(example) + '\n' for example in examples)
  os.replace(path + '.tmp', path)
  return path


def teacher_forced(config: ml_collections.ConfigDict, model: Any, params: Any, tokenizer: Any,
                   split: str) -> dict[str, float]:
  """Loss, bits per byte and token accuracy over the whole split, with train's eval step and batches."""
  from lm import train  # Imports the data pipeline (grain, tensorflow_datasets).
  from lm.data import pipeline
  step = jax.jit(functools.partial(train.eval_step, model=model,
                                   token_bytes=jnp.asarray(tokenizer.token_bytes, jnp.float32)))
  totals: dict[str, float] = {}
  for batch in pipeline.make_eval_batches(config.data, tokenizer, split, batch_size=config.train.eval_batch_size):
    for key, value in jax.device_get(step(params, batch)).items():
      totals[key] = totals.get(key, 0.0) + float(value)
  if not totals:
    raise ValueError(f'the {split} split produced no batches')
  return train.summarize(totals)


def _line(metrics: dict[str, float]) -> str:
  return '  '.join(f'{key} {value:.4g}' for key, value in metrics.items())


def evaluate_run(workdir: str, config: ml_collections.ConfigDict | None = None) -> dict[str, float]:
  """`./run.sh eval`: scores the latest checkpoint of `workdir` on config.eval.split: teacher-forced loss, bits
  per byte and accuracy, then config.eval.metrics of its generations; prints them and records them in
  workdir/eval_<step>.json. `config` None is the run's own."""
  from lm import train  # Imports the data pipeline.
  config, tokenizer, model, params, step = train.load_run(workdir, config)
  validate_eval_config(config)
  split = config.eval.split
  metrics = teacher_forced(config, model, params, tokenizer, split)
  print(f'step {step}  {split}  {_line(metrics)}', flush=True)
  if config.eval.metrics:
    generated = evaluate_generation(config, model, params, tokenizer, split, step, workdir=workdir)
    print(f'step {step}  {split} generation  {_line(generated)}', flush=True)
    metrics.update(generated)
  path = _record(os.path.abspath(os.path.expanduser(workdir)), step, split, {'metrics': metrics})
  print(f'wrote {path}')
  return metrics


def predict_from_workdir(workdir: str, texts: Sequence[str], *, task: str,
                         config: ml_collections.ConfigDict | None = None, prefix: str | None = None) -> list[str]:
  """`./run.sh summarize|translate|answer`: the latest checkpoint's output for each text, decoded with
  config.decode. `prefix` None: the run's data.prefix, or T5's TASK_PREFIXES[task] if that is empty."""
  from lm import train  # Imports the data pipeline.
  config, tokenizer, model, params, _ = train.load_run(workdir, config)
  validate_eval_config(config)
  if prefix is None:
    prefix = config.data.prefix or TASK_PREFIXES[task]
  texts = [tasks.model_input(text, config.data) for text in texts]
  return predict(model, params, tokenizer, texts, config.decode, prefix=prefix, batch_size=config.eval.batch_size,
                 seed=config.seed)


def eval_hook(config: ml_collections.ConfigDict, workdir: str) -> Callable[[int, Any, Any], None] | None:
  """The generation eval that `train.train_and_evaluate(..., eval_hook=...)` runs at its validation points:
  evaluate_generation on eval.split at the points that eval.every_steps divides (0: all) and at the last step,
  logged as split 'eval_generation' and recorded in eval_<step>.json and predictions_<step>_<split>.jsonl. None
  when eval.metrics is empty.

  The tokenizer and model are built at the first call, when training has saved the run's tokenizer. Multi-process
  runs skip it (decoding runs on one process): score them with `./run.sh eval` afterwards.
  """
  validate_eval_config(config)
  e = config.eval
  if not e.metrics:
    return None

  @functools.cache
  def tokenizer_and_model():
    from lm import train  # Imports the data pipeline.
    from lm.data import pipeline
    tokenizer = pipeline.get_tokenizer(config.data, workdir)
    return tokenizer, train.build_model(config, tokenizer.vocab_size)

  def hook(step: int, params: Any, log: Any) -> None:
    if e.every_steps and step % e.every_steps and step != config.train.num_steps:
      return
    if jax.process_count() > 1:
      if jax.process_index() == 0:
        print(f'step {step:6d}  no generation eval on a multi-host run: score it with `./run.sh eval` after it')
      return
    tokenizer, model = tokenizer_and_model()
    metrics = evaluate_generation(config, model, params, tokenizer, e.split, step, workdir=workdir)
    log.write(step, 'eval_generation', metrics)
    print(f'step {step:6d}  {e.split} generation  {_line(metrics)}', flush=True)

  return hook
