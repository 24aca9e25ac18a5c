"""Summarize Python docstrings: a function's signature and docstring body -> its one-line summary (T5 style).

`python_docstrings` from the installed standard library (1953 / 84 / 223 pairs by module on Python 3.11),
inputs prefixed with 'summarize: ', packed into rows of 512 encoder and 64 decoder tokens. The model is
`t5_pretrain.py`'s; by default it trains from scratch, and `--config.init_from=runs/t5_pretrain` fine-tunes the
span-corruption pretrained run instead (its SentencePiece vocabulary comes along).

Run:      ./run.sh train --config=experiments/docstrings_summarize.py --workdir=runs/docstrings_summarize
          [--config.init_from=runs/t5_pretrain]
Hardware: 2 CPU cores, no accelerator.
Time:     500 steps without dropout took 20.7 min (1242 s of training with another job on the cores, plus the
          ROUGE eval at each of 5 validation points); about 1.65 s per step of 16 packed rows on a quiet machine.
Expect:   does NOT yet beat the lead-sentence baseline. Measured (beam 4, ROUGE-1/2/L):
          - from scratch, no dropout, 500 steps: validation ROUGE-L 10.9 / 11.9 / 17.2 / 13.5 / 12.5 at steps
            100-500 (lead 20.3); test at step 500: 13.5 / 2.5 / 12.7 against the lead's 19.3 / 1.6 / 17.5;
          - dropout 0.1 (this config), 300 steps: validation ROUGE-L 14.95 at step 300;
          - from runs/t5_pretrain, 200 steps: validation 14.3 / 2.1 / 13.2 against the lead's 21.6 / 2.2 / 20.3.
          A 9M-parameter model and 1953 pairs learn generic summaries ('Return a list of ...'); the lead (the
          signature line) shares the function's name words with the summary.
"""
from experiments import base
from experiments import t5_pretrain


def get_config():
  c = t5_pretrain.t5_model(base.get_config())
  c.model.dropout = 0.1  # 1953 pairs overfit within ~10 epochs (250 steps) without it; costs ~8% per step.
  c.data.update(name='python_docstrings', task='seq2seq', prefix='summarize: ', max_input_len=512,
                max_target_len=64, pack=True)  # ~5 pairs per row: ~27 steps per epoch.
  c.train.update(batch_size=16, num_steps=500, learning_rate=1e-3, warmup_steps=50, log_every=20,
                 eval_every=100, checkpoint_every=100, eval_batch_size=16)
  # ROUGE of beam search (4 beams) on the 84 validation pairs at each validation point.
  c.eval.update(metrics=('rouge',), batch_size=16)
  c.decode.update(max_decode_len=64, max_input_len=512)
  return c
