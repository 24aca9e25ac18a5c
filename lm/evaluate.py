"""Task evaluation: string metrics as papers report them, the lead-sentence summarization baseline, and
generation-based evaluation of a model (decode a split, score it) for training and the command line.

The metrics take decoded strings (predictions[i] against references[i]) and return {name: float} on a 0-100
scale, so configs can name them by string through `METRICS` (`config.eval.metrics`). The generation itself is
`lm/generate.py`'s; a run directory is read by `lm/rundir.py`.
"""
from collections.abc import Callable, Sequence
import functools
import json
import os
import re
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import sacrebleu

from lm import config as config_lib
from lm import errors
from lm import generate
from lm import rundir
from lm import step as step_lib
from lm.data import datasets
from lm.data import pipeline
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
  # Here, not at the top: importing it (nltk, scipy.stats) takes 0.7 s of every command's start-up, and only
  # ROUGE needs it.
  from rouge_score import rouge_scorer  # noqa: PLC0415
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


# Prefixes of T5's multi-task mixture, used by the command line when the run's data.prefix is empty.
TASK_PREFIXES = {'summarize': 'summarize: ', 'translate': 'translate English to German: ', 'answer': ''}
NUM_SHOWN_EXAMPLES = 5  # Examples kept in eval_<step>.json (predictions_<step>_<split>.jsonl holds them all).


def answer_input(question: str, context: str) -> str:
  """T5's SQuAD input format."""
  return f'question: {question} context: {context}'


def predict(config: ml_collections.ConfigDict, model: Any, params: Any, tokenizer: Any, texts: Sequence[str], *,
            prefix: str | None = None) -> list[str]:
  """`generate.predict` of `texts` as config says: config.decode's search, data.prefix (or `prefix`),
  data.max_input_len, data.split_identifiers, eval.batch_size and the seed."""
  return generate.predict(model, params, tokenizer, [tasks.model_input(text, config.data) for text in texts],
                          generate.Decoding.from_config(config.decode), max_input_len=config.data.max_input_len,
                          prefix=config.data.prefix if prefix is None else prefix,
                          batch_size=config.eval.batch_size, seed=config.seed)


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
  pairs = datasets.split_pairs(config.data, split)
  pairs = pairs[:config.eval.num_examples or len(pairs)]
  if not pairs:
    raise errors.InputError(f'the {split} split of data.name={config.data.name!r} has no examples')
  inputs, targets = [x for x, _ in pairs], [y for _, y in pairs]
  predictions = predict(config, model, params, tokenizer, inputs)
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
  """Loss, bits per byte and token accuracy over the whole split, with the training's eval step and batches."""
  eval_batch = jax.jit(functools.partial(step_lib.eval_step, model=model,
                                         token_bytes=jnp.asarray(tokenizer.token_bytes, jnp.float32)))
  batches = pipeline.make_eval_batches(config.data, tokenizer, split, batch_size=config.train.eval_batch_size)
  return step_lib.evaluate(functools.partial(eval_batch, params), batches)


def _line(metrics: dict[str, float]) -> str:
  return '  '.join(f'{key} {value:.4g}' for key, value in metrics.items())


def evaluate_run(workdir: str, config: ml_collections.ConfigDict | None = None) -> dict[str, float]:
  """`./run.sh eval`: scores the latest checkpoint of `workdir` on config.eval.split: teacher-forced loss, bits
  per byte and accuracy, then config.eval.metrics of its generations; prints them and records them in
  workdir/eval_<step>.json. `config` None is the run's own."""
  run = rundir.load_run(workdir, config)
  config_lib.validate(run.config)
  split = run.config.eval.split
  metrics = teacher_forced(run.config, run.model, run.params, run.tokenizer, split)
  print(f'step {run.step}  {split}  {_line(metrics)}', flush=True)
  if run.config.eval.metrics:
    generated = evaluate_generation(run.config, run.model, run.params, run.tokenizer, split, run.step,
                                    workdir=workdir)
    print(f'step {run.step}  {split} generation  {_line(generated)}', flush=True)
    metrics.update(generated)
  path = _record(rundir.resolve(workdir), run.step, split, {'metrics': metrics})
  print(f'wrote {path}')
  return metrics


def predict_from_workdir(workdir: str, texts: Sequence[str], *, task: str,
                         config: ml_collections.ConfigDict | None = None, prefix: str | None = None) -> list[str]:
  """`./run.sh summarize|translate|answer`: the latest checkpoint's output for each text, decoded with
  config.decode. `prefix` None: the run's data.prefix, or T5's TASK_PREFIXES[task] if that is empty."""
  run = rundir.load_run(workdir, config)
  config_lib.validate(run.config)
  if prefix is None:
    prefix = run.config.data.prefix or TASK_PREFIXES[task]
  return predict(run.config, run.model, run.params, run.tokenizer, texts, prefix=prefix)


def sample_from_workdir(workdir: str, prompt: str | None = None, **overrides) -> str:
  """`./run.sh sample`: `generate.sample` from the latest checkpoint of a run directory, with the run's own
  config and tokenizer; `overrides` (num_tokens, temperature, top_k, seed) left as None take the run's
  config.decode.sample_* values (and config.seed). Without a prompt, an encoder-decoder's sample is its greedy
  predictions for the first validation examples."""
  run = rundir.load_run(workdir)
  pairs = ()
  if run.config.model.architecture == 'encoder_decoder' and prompt is None:
    pairs = datasets.split_pairs(run.config.data, 'validation')[:generate.NUM_SAMPLE_EXAMPLES]
  return generate.sample(run.model, run.params, run.tokenizer, run.config, prompt=prompt, pairs=pairs, **overrides)



def generation_eval(config: ml_collections.ConfigDict) -> Callable[[Any, int, Any], None] | None:
  """The generation eval that `train.train_and_evaluate(..., eval_hook=...)` runs at its validation points:
  evaluate_generation on eval.split at the points that eval.every_steps divides (0: all) and at the last step,
  logged as split 'eval_generation' and recorded in eval_<step>.json and predictions_<step>_<split>.jsonl. None
  when eval.metrics is empty. Multi-process runs skip it (decoding runs on one process): score them with
  `./run.sh eval` afterwards.
  """
  config_lib.validate(config)
  e = config.eval
  if not e.metrics:
    return None

  def hook(run: Any, step: int, params: Any) -> None:
    if e.every_steps and step % e.every_steps and step != config.train.num_steps:
      return
    if jax.process_count() > 1:
      run.say(f'step {step:6d}  no generation eval on a multi-host run: score it with `./run.sh eval` after it')
      return
    metrics = evaluate_generation(config, run.model, params, run.tokenizer, e.split, step, workdir=run.workdir)
    run.log.write(step, 'eval_generation', metrics)
    print(f'step {step:6d}  {e.split} generation  {_line(metrics)}', flush=True)

  return hook
