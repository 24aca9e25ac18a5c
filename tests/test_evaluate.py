"""Task metrics against values computed by hand from their definitions; decoding and generation eval on tiny
randomly initialised models."""
import json
import math
import types

import numpy as np
import pytest
import sacrebleu

from experiments import base
from lm import evaluate
from lm import generate
from lm import tokenizers


def test_rouge_hand_computed():
  # pred 'the cat sat on the mat' (6 tokens), ref 'the cat was on the mat' (6 tokens).
  # rouge1: clipped unigram overlap the x2 + cat + on + mat = 5; P = R = 5/6, F = 83.33.
  # rouge2: pred bigrams {the cat, cat sat, sat on, on the, the mat}, ref {the cat, cat was, was on, on the,
  #   the mat}; overlap the cat, on the, the mat = 3 of 5 each; P = R = 3/5, F = 60.
  # rougeL: LCS 'the cat on the mat' = 5; P = R = 5/6, F = 83.33.
  got = evaluate.rouge(['the cat sat on the mat'], ['the cat was on the mat'])
  assert got == pytest.approx({'rouge1': 500 / 6, 'rouge2': 60.0, 'rougeL': 500 / 6}, abs=1e-2)
  assert got['rouge1'] == pytest.approx(83.33, abs=1e-2)


def test_rouge_precision_and_recall_differ():
  # pred 'the cat', ref 'the cat sat'. rouge1: P = 2/2, R = 2/3, F = 2PR/(P+R) = (4/3)/(5/3) = 0.8.
  # rouge2: 'the cat' matches; P = 1/1, R = 1/2, F = 1/(3/2) = 2/3. rougeL: LCS 2, same as rouge1: 0.8.
  got = evaluate.rouge(['the cat'], ['the cat sat'])
  assert got == pytest.approx({'rouge1': 80.0, 'rouge2': 200 / 3, 'rougeL': 80.0}, abs=1e-2)


def test_rouge_identical_disjoint_stemmed_and_averaged():
  assert evaluate.rouge(['a b c d'], ['a b c d']) == pytest.approx({t: 100.0 for t in evaluate.ROUGE_TYPES})
  assert evaluate.rouge(['a b c d'], ['w x y z']) == {t: 0.0 for t in evaluate.ROUGE_TYPES}
  # Lowercased and Porter-stemmed (use_stemmer=True): 'The Cats' and 'the cat' are the same tokens.
  assert evaluate.rouge(['The Cats'], ['the cat']) == pytest.approx({t: 100.0 for t in evaluate.ROUGE_TYPES})
  # Per-example F averaged: (100 + 83.33) / 2, (100 + 60) / 2, (100 + 83.33) / 2.
  got = evaluate.rouge(['a b c d', 'the cat sat on the mat'], ['a b c d', 'the cat was on the mat'])
  assert got == pytest.approx({'rouge1': 275 / 3, 'rouge2': 80.0, 'rougeL': 275 / 3}, abs=1e-2)


def test_bleu_identical_is_100():
  text = ['the quick brown fox jumps over the lazy dog', 'It was not unexpected.']
  assert evaluate.bleu(text, text) == pytest.approx({'bleu': 100.0})


def test_bleu_of_a_corpus_without_4grams_is_0():
  # sacreBLEU's defaults (no effective order): a corpus with no 4-gram at all has no p4 and scores 0, even
  # when identical. A caveat for short-answer tasks, which exact_match suits better.
  assert evaluate.bleu(['same text'], ['same text']) == {'bleu': 0.0}


def test_bleu_hand_computed_with_brevity_penalty():
  # ref 'the quick brown fox jumps over the lazy dog' (9 tokens), hyp drops 'lazy' (8 tokens).
  # p1 = 8/8; p2 = 6/7 (only 'the dog' misses); p3 = 5/6 ('over the dog' misses);
  # p4 = 4/5 ('jumps over the dog' misses). BP = exp(1 - 9/8).
  # BLEU = BP * (1 * 6/7 * 5/6 * 4/5) ** (1/4) = exp(-1/8) * (4/7) ** (1/4) = 76.73.
  ref = 'the quick brown fox jumps over the lazy dog'
  hyp = 'the quick brown fox jumps over the dog'
  want = 100 * math.exp(-1 / 8) * (4 / 7) ** 0.25
  assert want == pytest.approx(76.73, abs=1e-2)
  assert evaluate.bleu([hyp], [ref])['bleu'] == pytest.approx(want, abs=1e-2)


def test_bleu_exp_smoothing_of_a_zero_precision():
  # hyp 'the quick red fox jumps over a lazy dog' against the same ref, both 9 tokens: BP = 1.
  # p1 = 7/9 (red, a miss); p2 = 4/8 (the quick, fox jumps, jumps over, lazy dog); p3 = 1/7 (fox jumps over);
  # p4 = 0/6, which exp smoothing (mteval-v13a) replaces by 1 / (2 * 6).
  # BLEU = (7/9 * 4/8 * 1/7 * 1/12) ** (1/4) = (1/216) ** (1/4) = 26.08; without smoothing it would be 0.
  ref = 'the quick brown fox jumps over the lazy dog'
  hyp = 'the quick red fox jumps over a lazy dog'
  assert evaluate.bleu([hyp], [ref])['bleu'] == pytest.approx(100 * 216 ** -0.25, abs=1e-2)
  assert 100 * 216 ** -0.25 == pytest.approx(26.08, abs=1e-2)


def test_bleu_is_corpus_level():
  # Counts summed over the two pairs (the brevity case above, then an identical 6-token pair):
  # p1 = (8+6)/(8+6), p2 = (6+5)/(7+5), p3 = (5+4)/(6+4), p4 = (4+3)/(5+3); BP = exp(1 - 15/14).
  ref, hyp = 'the quick brown fox jumps over the lazy dog', 'the quick brown fox jumps over the dog'
  same = 'the cat sat on the mat'
  want = 100 * math.exp(1 - 15 / 14) * (11 / 12 * 9 / 10 * 7 / 8) ** 0.25
  assert evaluate.bleu([hyp, same], [ref, same])['bleu'] == pytest.approx(want, abs=1e-2)
  # Not the mean of sentence scores (76.73 and 100).
  assert abs(want - (76.73 + 100) / 2) > 1


def test_sacrebleu_readme_example_on_the_defaults_bleu_uses():
  # sacreBLEU's README example (two references per sentence, which bleu() does not take): pins that the
  # installed version's corpus_bleu defaults still give its published 48.53.
  refs = [['The dog bit the man.', 'It was not unexpected.', 'The man bit him first.'],
          ['The dog had bit the man.', 'No one was surprised.', 'The man had bitten the dog.']]
  hyps = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.']
  assert sacrebleu.corpus_bleu(hyps, refs).score == pytest.approx(48.53, abs=5e-3)
  # bleu() on the first references, by hand (13a splits off each final '.', keeps "wasn't"; case kept):
  # 6 + 4 + 7 = 17 hyp tokens, 6 + 5 + 6 = 17 ref tokens, BP = 1. Matches: p1 = (6 + 2 + 4)/17 (It, .; The, man,
  # him, .), p2 = (5 + 0 + 1)/14 (The man), p3 = (4 + 0 + 0)/11, p4 = (3 + 0 + 0)/8.
  want = 100 * (12 / 17 * 6 / 14 * 4 / 11 * 3 / 8) ** 0.25
  assert want == pytest.approx(45.07, abs=1e-2)
  assert evaluate.bleu(hyps, refs[0])['bleu'] == pytest.approx(want, abs=1e-2)


def test_bleu_tokenizes_punctuation_13a():
  # 13a splits the final period off, so 'mat.' and 'mat .' are the same tokens.
  assert evaluate.bleu(['the cat sat on the mat.'], ['the cat sat on the mat .'])['bleu'] == pytest.approx(100.0)


def test_paired_bootstrap_interval():
  rng = np.random.default_rng(1)
  b = rng.uniform(0, 50, 400)
  low, high = evaluate.paired_bootstrap_interval(b + 3 + rng.normal(0, 1, 400), b)
  assert 2.8 < low < 3 < high < 3.2  # Pairing cancels b's spread: the interval is about the mean +- 0.1.
  low, high = evaluate.paired_bootstrap_interval(rng.uniform(0, 50, 400), rng.uniform(0, 50, 400))
  assert 3.5 < high - low < 4.5  # Differences of std 50/sqrt(6) over 400 examples: 2 x 1.96 x 1.02 = 4.0 wide.
  assert evaluate.paired_bootstrap_interval(np.ones(5), np.zeros(5)) == (1.0, 1.0)


def test_exact_match_strips_whitespace():
  got = evaluate.exact_match([' 42\n', 'Paris', 'paris', 'a b'], ['42', 'Paris ', 'Paris', 'a  b'])
  assert got == pytest.approx({'exact_match': 50.0})  # Case and inner whitespace still count.


@pytest.mark.parametrize('text, want', [
    ('The cat sat. Then it left.', 'The cat sat.'),
    ('Is it raining? Yes.', 'Is it raining?'),
    ('Stop! Now.', 'Stop!'),
    ('\n\n  First line. Second.\n', 'First line.'),
    ('A headline without a stop\nThe body. More body.', 'A headline without a stop'),
    ('no terminator at all  ', 'no terminator at all'),
    ('Version 3.11 is out. Upgrade.', 'Version 3.11 is out.'),  # A '.' inside a token does not end it.
    ('Wait... what? Okay.', 'Wait...'),
    ('It ends here.', 'It ends here.'),
    ('   ', ''),
])
def test_lead_sentence(text, want):
  assert evaluate.lead_sentence(text) == want


@pytest.mark.parametrize('name', sorted(evaluate.METRICS))
def test_metrics_reject_bad_inputs(name):
  metric = evaluate.METRICS[name]
  with pytest.raises(ValueError, match='2 predictions but 1 references'):
    metric(['a', 'b'], ['a'])
  with pytest.raises(ValueError, match='0 predictions'):
    metric([], [])
  with pytest.raises(TypeError, match='one string'):
    metric('a b', 'a b')


def test_metrics_by_name():
  assert set(evaluate.METRICS) == {'rouge', 'bleu', 'exact_match'}
  for name, metric in evaluate.METRICS.items():
    scores = metric(['the same four words'], ['the same four words'])
    assert all(v == pytest.approx(100.0) for v in scores.values()), (name, scores)


def seq2seq_config(tmp_path, **eval_overrides):
  c = base.get_config()
  c.model.architecture = 'encoder_decoder'
  c.data.update(name='reverse', task='seq2seq', synthetic_length=6, synthetic_examples=100,
                data_dir=str(tmp_path / 'tfds'), max_input_len=8, max_target_len=8)
  c.eval.update({'metrics': ('rouge', 'exact_match'), 'num_examples': 6, 'batch_size': 4, **eval_overrides})
  c.decode.update(max_decode_len=8)
  return c


def test_evaluate_generation_scores_and_records_with_the_lead_baseline(seq2seq, tmp_path):
  from lm.data import datasets
  tokenizer, model, params = seq2seq  # Its ALPHABET has the digits of the reverse task.
  config = seq2seq_config(tmp_path)
  metrics = evaluate.evaluate_generation(config, model, params, tokenizer, 'validation', 7, workdir=str(tmp_path))
  pairs = datasets.split_pairs(config.data, 'validation')[:6]
  inputs, targets = [x for x, _ in pairs], [y for _, y in pairs]
  lead = evaluate.rouge([evaluate.lead_sentence(x) for x in inputs], targets)
  assert set(metrics) == {'rouge1', 'rouge2', 'rougeL', 'exact_match', 'lead_rouge1', 'lead_rouge2', 'lead_rougeL',
                          'lead_margin_rougeL_low', 'lead_margin_rougeL_high'}
  assert metrics['lead_rouge1'] == pytest.approx(lead['rouge1'])
  margin = metrics['rougeL'] - metrics['lead_rougeL']
  assert metrics['lead_margin_rougeL_low'] <= margin <= metrics['lead_margin_rougeL_high']
  with open(tmp_path / 'eval_7.json') as f:
    report = json.load(f)['validation']
  assert report['metrics'] == pytest.approx(metrics)
  assert report['num_examples'] == 6 and report['decode']['num_beams'] == 4
  assert [e['input'] for e in report['examples']] == inputs[:evaluate.NUM_SHOWN_EXAMPLES]
  predictions = [e['prediction'] for e in report['examples']]
  assert predictions == evaluate.predict(config, model, params, tokenizer, inputs[:5])
  with open(tmp_path / 'predictions_7_validation.jsonl') as f:
    every = [json.loads(line) for line in f]
  assert [e['input'] for e in every] == inputs and [e['target'] for e in every] == targets
  assert [e['prediction'] for e in every[:5]] == predictions
  assert np.mean([e['rougeL'] for e in every]) == pytest.approx(metrics['rougeL'])
  assert np.mean([e['lead_rougeL'] for e in every]) == pytest.approx(metrics['lead_rougeL'])
  # Another split at the same step is added to the file, not written over it.
  evaluate.evaluate_generation(config, model, params, tokenizer, 'test', 7, workdir=str(tmp_path))
  with open(tmp_path / 'eval_7.json') as f:
    assert set(json.load(f)) == {'validation', 'test'}


def test_generation_eval_runs_at_the_points_every_steps_selects(seq2seq, tmp_path, monkeypatch):
  _, model, params = seq2seq
  config = seq2seq_config(tmp_path, every_steps=20)
  config.train.update(eval_every=10, num_steps=35)
  calls = []
  monkeypatch.setattr(evaluate, 'evaluate_generation', lambda *args, **kwargs: calls.append(args[5]) or {'x': 1.0})
  writes = []

  class Log:
    def write(self, step, split, metrics):
      writes.append((step, split, metrics))

  run = types.SimpleNamespace(model=model, tokenizer=tokenizers.make_tokenizer('char', ['0123456789']),
                              workdir=str(tmp_path), log=Log(), say=print)
  hook = evaluate.generation_eval(config)
  for step in (10, 20, 30, 35):
    hook(run, step, params)
  assert calls == [20, 35]  # every_steps divides 20; 35 is the last step.
  assert writes == [(20, 'eval_generation', {'x': 1.0}), (35, 'eval_generation', {'x': 1.0})]
  config.eval.metrics = ()
  assert evaluate.generation_eval(config) is None


def test_split_identifiers_change_what_the_model_reads_not_the_lead(seq2seq, tmp_path, monkeypatch):
  from lm.data import datasets
  tokenizer, model, params = seq2seq
  pairs = [('def get_value: key. the value.', 'get the value.'), ('class cat_sat. it sat.', 'the cat sat.')]
  monkeypatch.setattr(datasets, 'split_pairs', lambda data_config, split: pairs)
  config = seq2seq_config(tmp_path)
  config.data.split_identifiers = True
  config.eval.metrics = ('rouge',)
  leads_of = []
  lead_sentence = evaluate.lead_sentence
  monkeypatch.setattr(evaluate, 'lead_sentence', lambda text: leads_of.append(text) or lead_sentence(text))
  evaluate.evaluate_generation(config, model, params, tokenizer, 'validation', 3, workdir=str(tmp_path))
  with open(tmp_path / 'eval_3.json') as f:
    report = json.load(f)['validation']
  split_inputs = ['def get value: key. the value.', 'class cat sat. it sat.']
  assert [e['prediction'] for e in report['examples']] == generate.predict(
      model, params, tokenizer, split_inputs, generate.Decoding.from_config(config.decode),
      max_input_len=config.data.max_input_len, prefix=config.data.prefix)
  assert leads_of == [x for x, _ in pairs]  # The lead is the input's as written.
