"""Command line: `python -m lm.main MODE --workdir=runs/x [--config=experiments/x.py] [--config.a.b=v ...] [TEXT]`.

Modes:
  train      train (or resume) the experiment in --workdir, then print a sample.
  sample     print a continuation of --prompt from the latest checkpoint in --workdir.
  data       print what the input pipeline makes of --config's data: counts per split and decoded rows.
  pretokenize  tokenize --config's data splits once into token files that later runs read (lm/data/pretokenized.py):
             --workers processes (default one per CPU).
  sizes      print every size of the model ladder (model.size) under --config's other model options: params and
             FLOPs per token at its row lengths, for a vocabulary of --vocab_size.
  eval       score the latest checkpoint on config.eval.split: loss, bits per byte and config.eval.metrics.
  summarize  print the model's output for TEXT (the arguments, or stdin) with T5's prefix 'summarize: '.
  translate  the same with 'translate English to German: '.
  answer     the same for --question and --context ('question: ... context: ...').
  sweep      train a study file's runs (lm/sweep.py): --launcher=local|slurm, --print_commands, --sweep_dir, --only.
  results    print a sweep directory's results.csv.
  import     write --workdir from the Hugging Face model directory --hf_dir (lm/hf.py: GPT-2, Llama, T5).
  export     write --workdir's latest params as a Hugging Face model directory --hf_dir.
train, data, pretokenize and sizes default to --config=experiments/shakespeare.py, and train to
--workdir=runs/<experiment name> (in the repository); eval, summarize, translate and answer use the run's own
config.json unless --config is given.
--config.KEY=VALUE flags override either (e.g. --config.eval.split=test, --config.decode.num_beams=1).

Expected errors (lm/errors.py: bad input, a missing or busy run directory, ...) print one `error: ...` block on
stderr and exit 1 (flags that do not parse: 2), without a traceback; --traceback (or LM_TRACEBACK=1) shows it.
Other exceptions are bugs and keep theirs. absl, tfds and orbax logging is off below ERROR unless --verbosity is
given.
"""
import os
import re
import sys
import traceback

from absl import app
from absl import flags
from absl import logging
from ml_collections import config_flags

from lm import config as config_lib
from lm import errors
from lm import evaluate
from lm import flops
from lm import hf
from lm import results
from lm import rundir
from lm import sweep
from lm import train
from lm.data import pretokenized
from lm.data import report
from lm.data import tasks
from lm.data import tokenizer_cache

SHAKESPEARE_CHARS = 86  # The default experiment's char vocabulary: 84 characters of the works, pad and eos.
config_flags.DEFINE_config_file('config', None, 'Experiment file (ml_collections get_config()).',
                                lock_config=True)
flags.DEFINE_string('workdir', None, 'Run directory: config, metrics, checkpoints, samples.')
# sample: each flag left unset takes the run's own config.decode.sample_* value (seed: config.seed).
flags.DEFINE_string('prompt', None, 'sample: text to continue.')
flags.DEFINE_integer('num_tokens', None, 'sample: tokens to generate.')
flags.DEFINE_float('temperature', None, 'sample: softmax temperature; 0 is greedy.')
flags.DEFINE_integer('top_k', None, 'sample: sample among the k most likely tokens; 0 disables.')
flags.DEFINE_integer('seed', None, 'sample: random seed.')
flags.DEFINE_string('question', None, 'answer: the question.')
flags.DEFINE_string('context', None, 'answer: the text that holds the answer.')
flags.DEFINE_string('prefix', None, "summarize/translate/answer: input prefix; default the run's data.prefix, "
                    "else T5's for the mode.")
flags.DEFINE_enum('launcher', 'local', ['local', 'slurm'], 'sweep: run here in turn, or submit a SLURM job array.')
flags.DEFINE_bool('print_commands', False, 'sweep: print one train command per run instead, for any scheduler.')
flags.DEFINE_string('sweep_dir', None, 'sweep: the sweep directory; default runs/<study file name>.')
flags.DEFINE_string('only', '', 'sweep: run only the run of this name (what each SLURM task does).')
flags.DEFINE_integer('vocab_size', None, 'sizes: vocabulary of the embedding counts; default config.model.vocab_size, '
                     f'else {SHAKESPEARE_CHARS} (the default experiment\'s); GPT-2\'s is 50257.')
flags.DEFINE_bool('full', False, 'data: count a streamed dataset\'s tokens (data.streaming) in a pass over it.')
flags.DEFINE_integer('workers', 0, 'pretokenize: worker processes; 0: one per CPU.')
flags.DEFINE_integer('shard_records', pretokenized.SHARD_RECORDS, 'pretokenize: records per shard (a unit of work '
                     'and of resumption).')
flags.DEFINE_string('hf_dir', None, 'import: the Hugging Face model directory to read; export: the one to write.')
flags.DEFINE_bool('traceback', False, 'Show the full stack of expected errors too (also: LM_TRACEBACK=1).')
FLAGS = flags.FLAGS
TEXT_MODES = ('summarize', 'translate', 'answer')
RUN_MODES = ('eval',) + TEXT_MODES  # Modes whose default config is the run's own.
SWEEP_MODES = ('sweep', 'results')  # sweep STUDY_FILE, results SWEEP_DIR.
HF_MODES = ('import', 'export')
MODES = ('train', 'sample', 'data', 'pretokenize', 'sizes') + RUN_MODES + SWEEP_MODES + HF_MODES
CONFIG_MODES = ('train', 'data', 'pretokenize', 'sizes')  # Modes whose default config is the default experiment.


REPOSITORY = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEFAULT_EXPERIMENT = os.path.join(REPOSITORY, 'experiments', 'shakespeare.py')
RUN_CONFIG = os.path.join(REPOSITORY, 'lm', 'rundir.py')  # --config=RUN_CONFIG:WORKDIR: a run's own config.


def _flag_value(argv: list[str], name: str) -> str | None:
  """The value of --NAME=V or --NAME V in `argv`, else None."""
  for i, arg in enumerate(argv):
    if m := re.fullmatch(rf'--?{name}=(.*)', arg):
      return m.group(1)
    if re.fullmatch(rf'--?{name}', arg) and i + 1 < len(argv):
      return argv[i + 1]
  return None


def with_defaults(argv: list[str]) -> list[str]:
  """`argv` with the default --config and --workdir of its mode added where they are missing.

  train, data, sizes: --config=experiments/shakespeare.py; train: --workdir=runs/<experiment file name>. eval and the
  text modes given --workdir: --config=lm/rundir.py:WORKDIR, the run's own config, which --config.KEY=VALUE
  flags then override (ml_collections reads them from sys.argv itself, so this runs before flag parsing).
  """
  mode = next((a for a in argv[1:] if not a.startswith('-')), None)
  config, workdir = _flag_value(argv, 'config'), _flag_value(argv, 'workdir')
  added = []
  if mode in CONFIG_MODES and config is None:
    config = DEFAULT_EXPERIMENT
    added.append(f'--config={config}')
  if mode == 'train' and workdir is None:
    name = os.path.basename(config.partition(':')[0]).removesuffix('.py')
    added.append(f'--workdir={os.path.join(REPOSITORY, "runs", name)}')
  if mode in RUN_MODES and workdir and config is None:
    added.append(f'--config={RUN_CONFIG}:{workdir}')
  return [argv[0], *added, *argv[1:]]


def check_command_line(argv: list[str]) -> None:
  """Raises an expected error for what flag parsing would report as a stack of tracebacks: a --config file that
  does not exist, an unknown --config.KEY (with the nearest declared key)."""
  config = _flag_value(argv, 'config')
  if config is not None and not os.path.exists(path := config.partition(':')[0]):
    raise errors.MissingError(f'--config={config}: there is no file {path!r}; experiments are in '
                              f'{os.path.dirname(DEFAULT_EXPERIMENT)}')
  if config is not None and os.path.abspath(path) == RUN_CONFIG:  # ml_collections would wrap its error in a stack.
    rundir.load_config(config.partition(':')[2])
  for arg in argv[1:]:
    if m := re.fullmatch(r'--?config\.([\w.]+)(=.*)?', arg):
      config_lib.check_key(m.group(1))


def _parse_flags(argv: list[str]) -> list[str]:
  """absl's flag parsing, with its errors (a value that does not parse, an unknown flag) as `error: ...`."""
  try:
    return FLAGS(argv)
  except flags.Error as e:
    print(f'error: {e}\n(--helpshort lists the flags)', file=sys.stderr)
    sys.exit(2)


def _show_tracebacks(argv: list[str]) -> bool:
  if FLAGS.is_parsed():
    return FLAGS.traceback or os.environ.get('LM_TRACEBACK') == '1'
  return os.environ.get('LM_TRACEBACK') == '1' or any(re.fullmatch(r'--?traceback(=true)?', a) for a in argv)


def exit_with(error: errors.UserError, argv: list[str]) -> None:
  """Prints an expected error as one block (its stack too under --traceback) and exits 1."""
  if _show_tracebacks(argv):
    traceback.print_exception(error)
  print(f'error: {error}', file=sys.stderr, flush=True)
  sys.stdout.flush()
  # Not sys.exit: after a failed restore, orbax's leftover asyncio tasks print stacks at interpreter shutdown.
  # The run's own files are closed by now (train_and_evaluate's finally, setup's lock release).
  os._exit(1)


def main(argv):
  try:
    run_mode(argv)
  except errors.UserError as e:
    exit_with(e, argv)
  except errors.Stopped as e:  # By a signal, its state saved: a scheduler may requeue on the status.
    print(e, flush=True)
    sys.stderr.flush()
    os._exit(errors.REQUEUE_EXIT_CODE)  # Its files are closed; the interpreter's teardown would take another ~1 s.


def run_mode(argv):
  if len(argv) < 2 or argv[1] not in MODES or (len(argv) > 2 and argv[1] not in TEXT_MODES + SWEEP_MODES):
    raise errors.InputError(f'expected one mode out of {MODES} (text only after {TEXT_MODES}), got {argv[1:]}; '
                            '`./run.sh` with no arguments lists them')
  mode = argv[1]
  if not FLAGS['verbosity'].present:  # Library noise the user can do nothing about: orbax logs every save at
    # INFO, tfds warns of every custom (text_files) config, orbax of read-only managers. --verbosity=0 shows it.
    logging.set_verbosity(logging.ERROR)
  if mode in SWEEP_MODES:
    if len(argv) != 3:
      raise errors.InputError(f'{mode}: give one ' + ('study file' if mode == 'sweep' else 'sweep directory'))
    run_sweep_mode(mode, argv[2])
    return
  if mode not in ('data', 'pretokenize', 'sizes') and not FLAGS.workdir:
    raise errors.InputError('--workdir is required')
  if mode == 'data':
    print(report.describe(FLAGS.config.data, tokenizer_cache.get_tokenizer(FLAGS.config.data, None), full=FLAGS.full))
  elif mode == 'pretokenize':
    tokenizer = tokenizer_cache.get_tokenizer(FLAGS.config.data, None)
    for line in pretokenized.pretokenize_splits(FLAGS.config.data, tokenizer, shard_records=FLAGS.shard_records,
                                                num_workers=FLAGS.workers or len(os.sched_getaffinity(0))):
      print(line, flush=True)
  elif mode == 'sizes':
    lengths = tasks.row_lengths(FLAGS.config.data)
    print(flops.size_table(FLAGS.config.model, vocab_size=FLAGS.vocab_size or FLAGS.config.model.vocab_size
                           or SHAKESPEARE_CHARS, target_len=lengths.decoder, input_len=lengths.encoder))
  elif mode in HF_MODES:
    if not FLAGS.hf_dir:
      raise errors.InputError(f'{mode}: --hf_dir is required (the Hugging Face model directory)')
    if mode == 'import':
      print(hf.import_checkpoint(FLAGS.hf_dir, FLAGS.workdir))
    else:
      print(hf.export_checkpoint(FLAGS.workdir, FLAGS.hf_dir))
  elif mode == 'train':
    train.train_and_evaluate(FLAGS.config, FLAGS.workdir, eval_hook=evaluate.generation_eval(FLAGS.config))
  elif mode == 'sample':
    print(evaluate.sample_from_workdir(FLAGS.workdir, FLAGS.prompt, num_tokens=FLAGS.num_tokens,
                                       temperature=FLAGS.temperature, top_k=FLAGS.top_k, seed=FLAGS.seed))
  elif mode == 'eval':
    evaluate.evaluate_run(FLAGS.workdir, FLAGS.config)
  else:
    if mode == 'answer' and (FLAGS.question or FLAGS.context):
      if not FLAGS.question:
        raise errors.InputError('answer: --context needs --question')
      text = evaluate.answer_input(FLAGS.question, FLAGS.context or '')
    else:
      text = (' '.join(argv[2:]) or ('' if sys.stdin.isatty() else sys.stdin.read())).strip()
    if not text:
      raise errors.InputError(f'{mode}: give the text as arguments or on stdin'
                           + (', or --question and --context' if mode == 'answer' else ''))
    print(evaluate.predict_from_workdir(FLAGS.workdir, [text], task=mode, config=FLAGS.config,
                                        prefix=FLAGS.prefix)[0])


def run_sweep_mode(mode: str, path: str) -> None:
  """sweep: launch a study's unfinished runs (or print their commands); results: print results.csv."""
  if mode == 'results':
    print(results.format_results(results.write_results(path)))
    return
  name = os.path.basename(path).removesuffix('.py')
  sweep_dir = os.path.abspath(FLAGS.sweep_dir or os.path.join(REPOSITORY, 'runs', name)).rstrip('/')
  if FLAGS.print_commands:
    sweep.print_commands(path, sweep_dir)
  elif FLAGS.launcher == 'slurm':
    sweep.launch_slurm(path, sweep_dir)
  else:
    failed = sweep.launch_local(path, sweep_dir, only=FLAGS.only)
    if FLAGS.only and FLAGS.only not in {run['name'] for run in results.read_index(sweep_dir)['runs']}:
      raise errors.InputError(f'--only={FLAGS.only}: {path} has no run of that name')
    print(results.format_results(results.read_results(sweep_dir)))
    if failed:
      raise errors.InputError(f'{failed} run(s) of {path} failed: see the error column above and their train.log')


def run_command_line(argv: list[str]) -> None:
  argv = with_defaults(argv)
  try:
    check_command_line(argv)
  except errors.UserError as e:
    exit_with(e, argv)
  sys.argv = argv  # ml_collections reads its --config.KEY overrides from sys.argv.
  app.run(main, argv=argv, flags_parser=_parse_flags)


if __name__ == '__main__':
  run_command_line(sys.argv)
