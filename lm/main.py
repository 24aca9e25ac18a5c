"""Command line: `python -m lm.main MODE --workdir=runs/x [--config=experiments/x.py] [--config.a.b=v ...] [TEXT]`.

Modes:
  train      train (or resume) the experiment in --workdir, then print a sample.
  sample     print a continuation of --prompt from the latest checkpoint in --workdir.
  data       print what the input pipeline makes of --config's data: counts per split and decoded rows.
  eval       score the latest checkpoint on config.eval.split: loss, bits per byte and config.eval.metrics.
  summarize  print the model's output for TEXT (the arguments, or stdin) with T5's prefix 'summarize: '.
  translate  the same with 'translate English to German: '.
  answer     the same for --question and --context ('question: ... context: ...').
eval, summarize, translate and answer use the run's own config.json unless --config is given; --config.KEY=VALUE
flags override it (e.g. --config.eval.split=test, --config.decode.num_beams=1).
"""
import re
import sys

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lm import run_config

config_flags.DEFINE_config_file('config', None, 'Experiment file (ml_collections get_config()).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: config, metrics, checkpoints, samples.')
# sample: each flag left unset takes the run's own config.sample value (seed: config.seed).
flags.DEFINE_string('prompt', None, 'sample: text to continue.')
flags.DEFINE_integer('num_tokens', None, 'sample: tokens to generate.')
flags.DEFINE_float('temperature', None, 'sample: softmax temperature; 0 is greedy.')
flags.DEFINE_integer('top_k', None, 'sample: sample among the k most likely tokens; 0 disables.')
flags.DEFINE_integer('seed', None, 'sample: random seed.')
flags.DEFINE_string('question', None, 'answer: the question.')
flags.DEFINE_string('context', None, 'answer: the text that holds the answer.')
flags.DEFINE_string('prefix', None, "summarize/translate/answer: input prefix; default the run's data.prefix, "
                    "else T5's for the mode.")
FLAGS = flags.FLAGS
TEXT_MODES = ('summarize', 'translate', 'answer')
RUN_MODES = ('eval',) + TEXT_MODES  # Modes whose default config is the run's own.
MODES = ('train', 'sample', 'data') + RUN_MODES


def with_run_config(argv: list[str]) -> list[str]:
  """`argv` with --config=lm/run_config.py:WORKDIR first, for a run mode given --workdir but no --config."""
  mode = next((a for a in argv[1:] if not a.startswith('-')), None)
  workdir = next((m.group(1) for a in argv if (m := re.fullmatch(r'--?workdir=(.+)', a))), None)
  if mode not in RUN_MODES or not workdir or any(re.match(r'--?config(=|$)', a) for a in argv):
    return argv
  return [argv[0], f'--config={run_config.__file__}:{workdir}', *argv[1:]]


def main(argv):
  if len(argv) < 2 or argv[1] not in MODES or (len(argv) > 2 and argv[1] not in TEXT_MODES):
    raise app.UsageError(f'expected one mode out of {MODES} (text only after {TEXT_MODES}), got {argv[1:]}')
  mode = argv[1]
  if not FLAGS['verbosity'].present:  # orbax logs every save at INFO; --verbosity=0 shows it all.
    # Readers of a run also skip orbax's read-only and tfds' custom-config warnings.
    logging.set_verbosity(logging.WARNING if mode in ('train', 'data') else logging.ERROR)
  if mode in ('train', 'data') and FLAGS.config is None:
    raise app.UsageError('--config=experiments/<name>.py is required')
  if mode != 'data' and not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  if mode == 'data':
    from lm.data import report, tokenizer_cache  # Imported after flag parsing so `--help` stays fast.
    print(report.describe(FLAGS.config.data, tokenizer_cache.get_tokenizer(FLAGS.config.data, None)))
    return
  from lm import evaluate, train
  if mode == 'train':
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, eval_hook=evaluate.eval_hook(FLAGS.config, FLAGS.workdir))
  elif mode == 'sample':
    print(train.sample_from_workdir(FLAGS.workdir, FLAGS.prompt, num_tokens=FLAGS.num_tokens,
                                    temperature=FLAGS.temperature, top_k=FLAGS.top_k, seed=FLAGS.seed))
  elif mode == 'eval':
    evaluate.evaluate_run(FLAGS.workdir, FLAGS.config)
  else:
    if mode == 'answer' and (FLAGS.question or FLAGS.context):
      if not FLAGS.question:
        raise app.UsageError('answer: --context needs --question')
      text = evaluate.answer_input(FLAGS.question, FLAGS.context or '')
    else:
      text = (' '.join(argv[2:]) or ('' if sys.stdin.isatty() else sys.stdin.read())).strip()
    if not text:
      raise app.UsageError(f'{mode}: give the text as arguments or on stdin'
                           + (', or --question and --context' if mode == 'answer' else ''))
    print(evaluate.predict_from_workdir(FLAGS.workdir, [text], task=mode, config=FLAGS.config,
                                        prefix=FLAGS.prefix)[0])


if __name__ == '__main__':
  sys.argv = with_run_config(sys.argv)  # ml_collections reads the overrides from sys.argv itself.
  app.run(main)
