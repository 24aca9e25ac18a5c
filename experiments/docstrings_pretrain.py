"""Span-corruption pretraining for `docstrings_summarize.py`: `t5_pretrain.py`'s model and objective on the
docstring corpus that fine-tuning reads, the standard library plus the installed packages (20,617 train pairs:
every input and summary is a document), with identifiers split into words as the fine-tuning reads them.

Run:      ./run.sh train --config=experiments/docstrings_pretrain.py --workdir=runs/docstrings_pretrain
          then ./run.sh train --config=experiments/docstrings_summarize.py --workdir=runs/docstrings_summarize \
                   --config.init_from=runs/docstrings_pretrain
Hardware: 2 CPU cores, no accelerator.
Time:     3.5 min end to end (600 steps, ~17,800 tokens/s); fine-tuning from it then takes 16.0 min.
Expect:   validation loss 4.165 nats per target token (bits per byte 2.487) at step 600 (4.520 at 200, 4.268 at
          400). With --config.train.num_steps=1200 (6.6 min): 3.997 at step 1200, but the summarizer fine-tuned
          from it scored no better (validation ROUGE-L 17.2 against 17.5; see docstrings_summarize.py).
"""
from experiments import t5_pretrain


def get_config():
  c = t5_pretrain.get_config()
  c.data.update(docstrings_site_packages=True, split_identifiers=True)
  return c

