"""Default experiment: a character-level GPT (4 layers, width 256, 3.2M params, bf16) on Shakespeare's works.

Run:      ./run.sh train            (= --config=experiments/shakespeare.py --workdir=runs/shakespeare)
Hardware: 2-core Intel Xeon VM (2.6 GHz, AVX-512, AMX-BF16; docs/results.md#machines), no accelerator.
Time:     5.4 minutes end to end (318 s of training), data prepared.
Expect:   validation 2.25 bits per byte after 1500 steps (6.1M tokens, ~1.4 epochs); the issue asks <= 2.4.
History:  docs/results.md#shakespeare
"""
from experiments import base


def get_config():
  c = base.get_config()
  c.model.update(num_layers=4, d_model=256, num_heads=4)
  c.data.update(name='shakespeare', tokenizer='char', seq_len=128)
  c.train.update(batch_size=32, num_steps=1500, learning_rate=2e-3, warmup_steps=100, log_every=100,
                 eval_every=250, checkpoint_every=500)
  return c
