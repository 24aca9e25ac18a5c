"""Command line: `python -m lm.main MODE --config=experiments/x.py --workdir=runs/x [--config.a.b=v ...]`.

Modes:
  train   train (or resume) the experiment in --workdir, then print a sample.
  sample  print a continuation of --prompt from the latest checkpoint in --workdir.
  data    print what the input pipeline makes of --config's data: counts per split and decoded rows.
"""
from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

config_flags.DEFINE_config_file('config', None, 'Experiment file (ml_collections get_config()).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: config, metrics, checkpoints, samples.')
# sample: each flag left unset takes the run's own config.sample value (seed: config.seed).
flags.DEFINE_string('prompt', None, 'sample: text to continue.')
flags.DEFINE_integer('num_tokens', None, 'sample: tokens to generate.')
flags.DEFINE_float('temperature', None, 'sample: softmax temperature; 0 is greedy.')
flags.DEFINE_integer('top_k', None, 'sample: sample among the k most likely tokens; 0 disables.')
flags.DEFINE_integer('seed', None, 'sample: random seed.')
FLAGS = flags.FLAGS
MODES = ('train', 'sample', 'data')


def main(argv):
  if len(argv) != 2 or argv[1] not in MODES:
    raise app.UsageError(f'expected one mode out of {MODES}, got {argv[1:]}')
  if not FLAGS['verbosity'].present:
    logging.set_verbosity(logging.WARNING)  # orbax logs every save at INFO; --verbosity=0 shows it all.
  mode = argv[1]
  if mode in ('train', 'data') and FLAGS.config is None:
    raise app.UsageError('--config=experiments/<name>.py is required')
  if mode in ('train', 'sample') and not FLAGS.workdir:
    raise app.UsageError('--workdir is required')
  if mode == 'data':
    from lm.data import pipeline, report  # Imported after flag parsing so `--help` stays fast.
    print(report.describe(FLAGS.config.data, pipeline.get_tokenizer(FLAGS.config.data, None)))
    return
  from lm import train
  if mode == 'train':
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir)
  else:
    print(train.sample_from_workdir(FLAGS.workdir, FLAGS.prompt, num_tokens=FLAGS.num_tokens,
                                    temperature=FLAGS.temperature, top_k=FLAGS.top_k, seed=FLAGS.seed))


if __name__ == '__main__':
  app.run(main)
