"""Summarize Python docstrings: a function's signature and docstring body -> its one-line summary (T5 style).

`python_docstrings` from the installed standard library (1953 / 84 / 223 pairs by module on Python 3.11),
inputs prefixed with 'summarize: ', packed into rows of 512 encoder and 64 decoder tokens. The model is
`t5_pretrain.py`'s; by default it trains from scratch, and `--config.init_from=runs/t5_pretrain` fine-tunes the
span-corruption pretrained run instead (its SentencePiece vocabulary comes along).

Run:      ./run.sh train --config=experiments/docstrings_summarize.py --workdir=runs/docstrings_summarize
          [--config.init_from=runs/t5_pretrain]
Hardware: 2 CPU cores, no accelerator.
Time:     estimated 17-22 minutes, not yet measured in full: 1.65 s per step of 16 packed rows (9,216 tokens) on a
          quiet machine, 2.25 s on a busy one, plus ~30 s per validation point for the loss and the beam search.
Expect:   not yet measured in full. A 200-step run from runs/t5_pretrain reached validation loss 5.74 (from
          scratch without dropout: 5.94 at step 200, best 5.89 at step 250, then rising) and ROUGE-1/2/L
          14.3 / 2.1 / 13.2, below the lead-sentence baseline's 21.6 / 2.2 / 20.3: a 9M-parameter model and
          1953 pairs learn generic summaries ('Return a list of ...').
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
