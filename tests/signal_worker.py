"""A `./run.sh train` (lm.main) that is slow in one phase, for the signal tests: `python signal_worker.py PHASE
WORKDIR CORPUS`. PHASE 'validation': the generation eval hook of step 5 (a checkpoint is due at 100 only);
'sample': the end-of-run sample; 'tokenizer': SentencePiece training (its child process); 'checkpoint': the
write of the second checkpoint (step 10; step 5's is written as usual), which no signal interrupts. The slow
phase prints 'slow PHASE' (the child its pid), then waits in Python for 60 s; the test sends the signal then."""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from lm import checkpoint  # noqa: E402
from lm import evaluate  # noqa: E402
from lm import generate  # noqa: E402
from lm import main  # noqa: E402
from lm import tokenizers  # noqa: E402


def wait_in_python(phase):
  print(f'slow {phase}', flush=True)
  for _ in range(600):  # Python bytecode between sleeps: where a signal handler runs.
    time.sleep(0.1)


def run(phase: str, workdir: str, corpus: str) -> None:
  overrides = ['--config.model.num_layers=1', '--config.model.d_model=32', '--config.model.dtype=float32',
               '--config.data.name=text_files', f'--config.data.path={corpus}/corpus.txt',
               f'--config.data.data_dir={corpus}/tfds', '--config.data.seq_len=32', '--config.train.batch_size=8',
               '--config.train.eval_batch_size=8', '--config.train.time_budget_s=0', '--config.train.log_every=1',
               '--config.train.num_steps=10', '--config.train.eval_every=5', '--config.train.checkpoint_every=100',
               '--config.decode.sample_num_tokens=5']
  if phase == 'validation':
    evaluate.generation_eval = lambda config: lambda run, step, params: wait_in_python(phase)
  elif phase == 'sample':
    generate.sample = lambda *args, **kwargs: wait_in_python(phase)
  elif phase == 'checkpoint':
    overrides.append('--config.train.checkpoint_every=5')
    real_save = checkpoint.Checkpointer.save

    def save(self, step, *args):
      if step == 10:
        wait_in_python(phase)
      real_save(self, step, *args)
    checkpoint.Checkpointer.save = save
  elif phase == 'tokenizer':
    overrides += ['--config.data.tokenizer=sentencepiece', '--config.data.spm_vocab_size=400']
    tokenizers._SPM_CHILD = "import os, time; print('slow tokenizer', os.getpid(), flush=True); time.sleep(60)"
  main.run_command_line(['lm.main', 'train', f'--workdir={workdir}', *overrides])


if __name__ == '__main__':
  run(*sys.argv[1:])
