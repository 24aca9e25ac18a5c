"""A small T5-style encoder-decoder (2 + 2 layers, width 128, 1.0M params) learns to reverse 12-digit strings.

Run:      ./run.sh train --config=experiments/reverse.py --workdir=runs/reverse
          (`./run.sh eval --workdir=runs/reverse` scores the checkpoint again)
Hardware: 2-core Intel Xeon VM (2.6 GHz, AVX-512, AMX-BF16; docs/results.md#machines), no accelerator.
Time:     2.2 minutes end to end (1000 steps in 85-93 s), data prepared.
Expect:   exact match of greedy decoding on the 10,000 validation strings 99.87% at step 1000 (printed as
          `validation generation exact_match`, kept in eval_1000.json); the issue asks >= 99% within 5 minutes.
History:  docs/results.md#reverse (other seeds, validation loss)
"""
from experiments import base


def get_config():
  c = base.get_config()
  c.model.update(architecture='encoder_decoder', num_layers=2, d_model=128, num_heads=4, position='relative',
                 norm='rmsnorm', mlp='gated_gelu', use_bias=False)
  # 12 digits + eos on both sides; the char vocabulary is the ten digits and the special ids.
  c.data.update(name='reverse', task='seq2seq', tokenizer='char', synthetic_length=12, max_input_len=13,
                max_target_len=13)
  c.train.update(batch_size=128, num_steps=1000, learning_rate=5e-3, warmup_steps=100, log_every=100,
                 eval_every=500, checkpoint_every=500, eval_batch_size=512)
  # Exact match of greedy decoding on all 10,000 validation strings at each validation point (a few seconds).
  c.eval.update(metrics=('exact_match',), batch_size=500)
  c.decode.update(num_beams=1, max_decode_len=13)
  return c
