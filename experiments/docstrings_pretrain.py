"""Span-corruption pretraining for `docstrings_summarize.py`: `t5_pretrain.py`'s model and objective on the
docstring corpus that fine-tuning reads, the standard library plus the installed packages (20,617 train pairs:
every input and summary is a document), with identifiers split into words as the fine-tuning reads them.

Run:      ./run.sh train --config=experiments/docstrings_pretrain.py --workdir=runs/docstrings_pretrain
          then ./run.sh train --config=experiments/docstrings_summarize.py --workdir=runs/docstrings_summarize \
                   --config.init_from=runs/docstrings_pretrain
Hardware: 2 CPU cores, no accelerator.
Time:     4.4 min end to end on a fresh clone (600 steps, ~16,000 tokens/s); fine-tuning from it takes 16.7 min.
Expect:   validation loss 3.962 nats per target token (bits per byte 2.332) at step 600 (4.300 at 200, 4.068 at
          400) on a fresh clone; 3.861 (2.305) on the development checkout, whose packages, and so corpus and
          vocabulary, differed by one version (platformdirs 4.14.8 against 4.14.9). These are with the copy
          mechanism (`model.pointer_generator`) that docstrings_summarize uses: span corruption's masked words
          often appear elsewhere in the input. Without it (t5_pretrain.py's model, development checkout): 4.165 at
          step 600 (4.520 at 200, 4.268 at 400); with --config.train.num_steps=1200 (6.6 min) 3.997 at step 1200,
          but the summarizer fine-tuned from that scored no better (see docstrings_summarize.py).
"""
from experiments import t5_pretrain


def get_config():
  c = t5_pretrain.get_config()
  c.data.update(docstrings_site_packages=True, split_identifiers=True)
  c.model.pointer_generator = True  # docstrings_summarize's model, so that it can start from these params.
  return c

