"""The command line on a tiny trained encoder-decoder run: eval, summarize, the run-config overrides, errors."""
import json
import os
import subprocess
import sys

import pytest

from experiments import base
from lm import evaluate
from lm import generate
from lm import main
from lm import model as model_lib
from lm import rundir
from lm import train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def tiny_seq2seq_config(root):
  c = base.get_config()
  c.model.update(architecture='encoder_decoder', num_layers=1, d_model=32, num_heads=2, position='relative',
                 norm='rmsnorm', use_bias=False)
  c.data.update(name='reverse', task='seq2seq', synthetic_length=6, synthetic_examples=200,
                data_dir=str(root / 'tfds'), max_input_len=8, max_target_len=8)
  c.train.update(batch_size=8, num_steps=3, warmup_steps=1, log_every=1, eval_every=3, checkpoint_every=3,
                 eval_batch_size=8)
  c.eval.update(metrics=('exact_match',), num_examples=4, batch_size=4)
  c.decode.update(max_decode_len=8)
  return c


@pytest.fixture(scope='module')
def run_dir(tmp_path_factory):
  """3 steps of a tiny encoder-decoder on 6-digit reversal, with the generation eval hook main.py wires."""
  root = tmp_path_factory.mktemp('main')
  config, workdir = tiny_seq2seq_config(root), str(root / 'run')
  train.train_and_evaluate(config, workdir, eval_hook=evaluate.generation_eval(config))
  return workdir


def run_main(*args, stdin=''):
  return subprocess.run([sys.executable, '-m', 'lm.main', *args], capture_output=True, text=True, cwd=REPO,
                        input=stdin, timeout=120)


def test_training_runs_the_generation_eval(run_dir):
  logged = rundir.read_metrics(run_dir, 'eval_generation')
  assert [m['step'] for m in logged] == [3]
  with open(os.path.join(run_dir, 'eval_3.json')) as f:
    report = json.load(f)['validation']
  assert report['num_examples'] == 4 and len(report['examples']) == 4
  # Exact match from its definition, on the 4 recorded examples: percent of predictions equal to the target.
  hits = [e['prediction'].strip() == e['target'].strip() for e in report['examples']]
  assert logged[0]['exact_match'] == report['metrics']['exact_match'] == 100 * sum(hits) / 4


def test_load_run(run_dir):
  config, tokenizer, model, params, step = rundir.load_run(run_dir)
  assert step == 3 and isinstance(model, model_lib.EncoderDecoder)
  assert config.eval.metrics == ('exact_match',)  # Tuples survive config.json.
  assert tokenizer.encode('0123').tolist() == [2, 3, 4, 5]


def test_summarize_prints_the_prediction(run_dir):
  config, tokenizer, model, params, _ = rundir.load_run(run_dir)
  assert config.decode.num_beams == 4  # The run's own: the command below asks for 2.
  # What 2 and 4 beams predict, without the command's code (the run config, predict_from_workdir).
  candidates = [f'{i * 123457 % 10**6:06d}' for i in range(1, 17)]
  beams = {}
  for num_beams in (2, 4):
    decoding = config.decode.copy_and_resolve_references()
    decoding.num_beams = num_beams
    beams[num_beams] = dict(zip(candidates, generate.predict(
        model, params, tokenizer, candidates, generate.Decoding.from_config(decoding),
        max_input_len=config.data.max_input_len, batch_size=len(candidates))))
  # A text whose prediction 2 beams change shows the override is read; another text, that the text is.
  text = next((x for x in candidates if beams[2][x] != beams[4][x]), None)
  assert text, f'2 and 4 beams predict alike for every candidate: {beams[2]}'
  other = next((x for x in candidates if beams[2][x] != beams[2][text]), None)
  assert other, f'2 beams predict the same for every candidate: {beams[2]}'
  # The run's char vocabulary has only digits: T5's 'summarize: ' could not be encoded, so --prefix= clears it.
  flags = (f'--workdir={run_dir}', '--prefix=', '--config.decode.num_beams=2')
  from_argument = run_main('summarize', *flags, text)
  from_stdin = run_main('summarize', *flags, stdin=other)
  assert from_argument.returncode == 0, from_argument.stderr
  assert from_stdin.returncode == 0, from_stdin.stderr
  assert [from_argument.stdout, from_stdin.stdout] == [beams[2][text] + '\n', beams[2][other] + '\n']


def test_eval_scores_another_split_with_overrides(run_dir):
  result = run_main('eval', f'--workdir={run_dir}', '--config.eval.split=test', '--config.decode.num_beams=1')
  assert result.returncode == 0, result.stderr
  assert 'step 3  test  loss' in result.stdout and 'exact_match' in result.stdout
  with open(os.path.join(run_dir, 'eval_3.json')) as f:
    reports = json.load(f)
  assert set(reports) == {'validation', 'test'}  # The hook's validation entry is kept.
  assert reports['test']['decode']['num_beams'] == 1
  assert {'loss', 'bits_per_byte', 'accuracy', 'exact_match'} <= set(reports['test']['metrics'])


@pytest.fixture(scope='module')
def bad_inputs(tmp_path_factory):
  """A directory of faulty inputs: a non-UTF-8 text, an empty folder, a run directory whose config.json is
  corrupt."""
  root = tmp_path_factory.mktemp('bad')
  (root / 'latin1.txt').write_bytes('Fran\xe7ois est all\xe9 \xe0 la plage.\n'.encode('latin-1'))
  (root / 'empty').mkdir()
  (root / 'corrupt_run').mkdir()
  (root / 'corrupt_run' / 'config.json').write_text('{"model": {"d_model": 64,\n  "num_heads": }')
  return root


# (command line, what stderr's one `error:` line says); {bad} is the bad_inputs directory. Each goes through
# ./run.sh as a user types it.
EXPECTED_ERRORS = [
    (('evaluate', '--workdir=x'), "unknown command 'evaluate'"),  # ./run.sh's own.
    (('sample', '--workdir=x', 'extra text'), 'expected one mode'),
    (('summarize', 'some text'), '--workdir is required'),
    (('eval', '--workdir=/nonexistent/run'), 'config.json not found'),
    (('train', '--workdir={bad}/r', '--config.train.learnin_rate=1'),
     "unknown config key 'train.learnin_rate'; did you mean 'train.learning_rate'?"),
    (('train', '--config=experiments/nope.py'), "no file 'experiments/nope.py'"),
    (('train', '--workdir={bad}/r', '--config.train.num_steps=many'), "--config.train.num_steps=many"),
    (('train', '--workdir={bad}/r', '--config.parallel.strategy=mesh', '--config.parallel.mesh_shape=(3,1,1)'),
     'parallel.mesh_shape=(3, 1, 1) needs 3 devices'),
    (('train', '--workdir={bad}/r', '--config.data.name=text_files', '--config.data.path={bad}/latin1.txt',
      '--config.data.data_dir={bad}/tfds'), "latin1.txt' is not valid UTF-8: byte b'\\xe7' at byte offset 4"),
    (('train', '--workdir={bad}/r', '--config.data.name=text_files', '--config.data.path={bad}/empty',
      '--config.data.data_dir={bad}/tfds'), 'empty' + "' holds no *.txt files"),
    (('eval', '--workdir={bad}/corrupt_run'), 'corrupt_run/config.json is corrupt (line 2 column 16: Expecting value)'),
]


@pytest.mark.parametrize('args, message', EXPECTED_ERRORS, ids=[' '.join(a)[:60] for a, _ in EXPECTED_ERRORS])
def test_expected_errors_are_one_line_without_a_traceback(bad_inputs, args, message):
  args = [a.replace('{bad}', str(bad_inputs)) for a in args]
  result = subprocess.run([os.path.join(REPO, 'run.sh'), *args], capture_output=True, text=True, cwd=REPO,
                          timeout=180, env={**os.environ, 'XLA_FLAGS': ''})
  assert result.returncode not in (0, None), result.stdout
  assert 'Traceback' not in result.stderr, result.stderr
  errors = [line for line in result.stderr.splitlines() if line.startswith('error: ')]
  assert len(errors) == 1 and message in errors[0], result.stderr


def test_answer_needs_a_question_for_its_context(run_dir):
  result = run_main('answer', f'--workdir={run_dir}', '--context=c')
  assert result.returncode == 1 and 'Traceback' not in result.stderr
  assert result.stderr.strip() == 'error: answer: --context needs --question'


def test_traceback_flag_shows_the_stack_of_an_expected_error():
  result = run_main('eval', '--workdir=/nonexistent/run', '--traceback')
  assert result.returncode == 1
  assert 'Traceback' in result.stderr and 'load_config' in result.stderr
  assert result.stderr.rstrip().splitlines()[-1].startswith('error: /nonexistent/run/config.json not found')


def test_each_mode_gets_its_default_config_and_workdir():
  run_config = f'--config={main.REPOSITORY}/lm/rundir.py:runs/x'
  assert main.with_defaults(['m', 'eval', '--workdir=runs/x', '--config.eval.split=test']) == [
      'm', run_config, 'eval', '--workdir=runs/x', '--config.eval.split=test']
  assert main.with_defaults(['m', 'summarize', '--workdir', 'runs/x', 'text'])[1] == (
      f'--config={main.REPOSITORY}/lm/rundir.py:runs/x')
  shakespeare = f'{main.REPOSITORY}/experiments/shakespeare.py'
  assert main.with_defaults(['m', 'train']) == [
      'm', f'--config={shakespeare}', f'--workdir={main.REPOSITORY}/runs/shakespeare', 'train']
  assert main.with_defaults(['m', 'train', '--config=experiments/reverse.py', '--config.seed=1']) == [
      'm', f'--workdir={main.REPOSITORY}/runs/reverse', 'train', '--config=experiments/reverse.py', '--config.seed=1']
  assert main.with_defaults(['m', 'train', '--config', 'x/t5_pretrain.py:arg'])[1] == (
      f'--workdir={main.REPOSITORY}/runs/t5_pretrain')
  assert main.with_defaults(['m', 'data'])[1] == f'--config={shakespeare}'
  assert main.with_defaults(['m', 'sizes']) == ['m', f'--config={shakespeare}', 'sizes']
  for argv in (['m', 'eval', '--workdir=runs/x', '--config=experiments/reverse.py'],  # Given: kept.
               ['m', 'train', '--workdir=runs/x', '--config=experiments/reverse.py'], ['m', 'eval'],
               ['m', 'sample', '--workdir=runs/x']):
    assert main.with_defaults(argv) == argv


def test_sizes_prints_every_size_of_the_ladder():
  """Under the default experiment's other model options; the vocabulary and row lengths as given."""
  result = run_main('sizes', '--vocab_size=50257', '--config.data.seq_len=1024', '--config.model.mlp=swiglu')
  assert result.returncode == 0, result.stderr
  heading, columns, *rows = result.stdout.splitlines()
  assert 'mlp swiglu' in heading and 'vocab 50,257, context 1024' in heading and 'non-emb' in columns
  assert [row.split()[0] for row in rows] == list(model_lib.SIZES)


def test_an_unexpected_exception_keeps_its_traceback():
  """A bug (here: sampling raises ZeroDivisionError) is not dressed as an expected error."""
  code = ('import sys; from lm import evaluate, main\n'
          'def broken(*args, **kwargs): return 1 / 0\n'
          'evaluate.sample_from_workdir = broken\n'
          "main.run_command_line(['lm.main', 'sample', '--workdir=runs/x'])")
  result = subprocess.run([sys.executable, '-c', code], capture_output=True, text=True, cwd=REPO, timeout=120)
  assert result.returncode not in (0, None)
  assert 'Traceback' in result.stderr and 'ZeroDivisionError: division by zero' in result.stderr
  assert 'error: ' not in result.stderr
