"""Default experiment: a character-level GPT (4 layers, width 128, 0.8M params) on Shakespeare's works.

Run:      ./run.sh train            (= --config=experiments/shakespeare.py --workdir=runs/shakespeare)
Hardware: 2-core Intel Xeon VM (2.6 GHz, AVX-512, AMX-BF16; docs/results.md#machines), no accelerator;
          model.dtype='auto' is bfloat16 there. Steps: 4000, or what fits 6 minutes on a slower CPU.
Time:     5.0 minutes end to end (265 s of training, 4000 steps), data prepared.
Expect:   validation 2.25 bits per byte on the held-out works (8.2M tokens, ~1.9 epochs).
History:  docs/results.md#shakespeare
"""
from experiments import base


def get_config():
  c = base.get_config()
  # The model is lm/config.py's unsized default, 4 layers of width 128 with 4 heads, left unset so that
  # --config.model.size=NAME picks a size of the ladder instead (lm/model.py SIZES).
  c.data.update(name='shakespeare', tokenizer='char', seq_len=128)
  # 4000 steps, or fewer where they would take over 6 minutes at the step time measured at the first start.
  c.train.update(batch_size=16, num_steps=4000, time_budget_s=360.0, learning_rate=3e-3, warmup_steps=100,
                 log_every=100, eval_every=500, eval_batches=20, checkpoint_every=1000)
  return c
