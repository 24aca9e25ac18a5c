"""Span-corruption pretraining for `docstrings_summarize.py`: `t5_pretrain.py`'s objective and model, with the
copy mechanism (`model.pointer_generator`), on the docstring corpus that fine-tuning reads (20,617 train pairs,
the standard library plus the installed packages), identifiers split into words as the fine-tuning reads them.

Run:      ./run.sh train --config=experiments/docstrings_pretrain.py --workdir=runs/docstrings_pretrain
          then docstrings_summarize.py's commands (`--config.init_from=runs/docstrings_pretrain`)
Hardware: 2-core Intel Xeon VM (2.6 GHz, AVX-512, AMX-BF16; docs/results.md#machines), no accelerator.
Time:     4.4 minutes end to end (600 steps, ~16,000 tokens/s), fresh clone.
Expect:   validation loss 3.962 nats per target token (bits per byte 2.332) at step 600; the corpus is the installed
          packages' docstrings, so this moves with their versions (3.861 one package version apart).
History:  docs/results.md#docstrings_pretrain
"""
from experiments import t5_pretrain


def get_config():
  c = t5_pretrain.get_config()
  c.data.update(docstrings_site_packages=True, split_identifiers=True)
  c.model.pointer_generator = True  # docstrings_summarize's model, so that it can start from these params.
  return c

