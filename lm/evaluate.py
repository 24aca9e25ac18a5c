"""Task evaluation: string metrics as papers report them, and the lead-sentence summarization baseline.

The metrics take decoded strings (predictions[i] against references[i]) and return {name: float} on a 0-100
scale, so configs can name them by string through `METRICS`. This top part imports only numpy, rouge_score,
sacrebleu and the stdlib: it must stay importable without tensorflow_datasets or grain.
"""
from collections.abc import Callable, Sequence
import re

import numpy as np
from rouge_score import rouge_scorer
import sacrebleu

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


def rouge(predictions: Sequence[str], references: Sequence[str]) -> dict[str, float]:
  """Mean per-example ROUGE-1/2/L F-measure x100, as t5.evaluation.metrics.rouge reports it.

  rouge_score lowercases, keeps only [a-z0-9]+ tokens and Porter-stems them: text in other scripts scores 0.
  """
  _check_pairs(predictions, references)
  scorer = rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)
  scores = [scorer.score(target=r, prediction=p) for p, r in zip(predictions, references)]
  return {t: 100 * float(np.mean([s[t].fmeasure for s in scores])) for t in ROUGE_TYPES}


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
