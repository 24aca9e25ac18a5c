"""T5 v1.1-style span-corruption pretraining of a small encoder-decoder on the Python docstrings corpus.

T5 v1.1's recipe at CPU scale (`t5_model`, 9.1M params; the T5 fine-tuning experiments share it, so that they
can start from this run with `--config.init_from=runs/t5_pretrain`) on every input and summary of
`python_docstrings`' standard-library train split (~200k tokens). For a real run: `--config.data.name=c4/en`.

Run:      ./run.sh train --config=experiments/t5_pretrain.py --workdir=runs/t5_pretrain
Hardware: 2-core Intel Xeon VM (2.6 GHz, AVX-512, AMX-BF16; docs/results.md#machines), no accelerator.
Time:     3.3 minutes end to end (600 steps in 188 s, ~17,000 tokens/s).
Expect:   validation loss 4.47 nats per target token (bits per byte 2.58) at step 600, train loss 3.18.
History:  docs/results.md#t5_pretrain (the recipe in full; earlier runs and kernel inits)
"""
from experiments import base


def t5_model(c):
  """T5 v1.1 architecture at CPU scale (4 + 4 layers, width 256, 9.1M params with the 8000-piece vocabulary);
  the fine-tuning experiments share it, so that their params match this run's checkpoints (`config.init_from`)."""
  c.model.update(architecture='encoder_decoder', num_layers=4, d_model=256, num_heads=4, d_ff=640,
                 position='relative', relative_buckets=32, relative_max_distance=128, norm='rmsnorm',
                 norm_eps=1e-6, mlp='gated_gelu', use_bias=False, tie_embeddings=True, scale_tied_logits=True,
                 embed_init_std=1.0, kernel_init='fan_in')
  c.data.update(tokenizer='sentencepiece', spm_vocab_size=8000)
  return c


def catalogue_finetune(c, metric: str):
  """The accelerator-scale fine-tuning schedule shared by the catalogue tasks (cnn_dailymail, xsum, wmt14,
  squad): 20k steps of 64 rows, and during training `metric` on the first 1000 validation examples
  (`./run.sh eval --config.eval.num_examples=0` scores all)."""
  c.train.update(batch_size=64, num_steps=20000, learning_rate=5e-4, warmup_steps=1000, log_every=200,
                 eval_every=2000, checkpoint_every=2000, eval_batch_size=64)
  c.eval.update(metrics=(metric,), num_examples=1000, batch_size=64)
  return c


def get_config():
  c = t5_model(base.get_config())
  c.data.update(name='python_docstrings', task='span_corruption', max_input_len=128, max_target_len=32,
                noise_density=0.15, mean_noise_span_length=3.0, pack=True)
  c.train.update(batch_size=32, num_steps=600, learning_rate=1e-3, warmup_steps=60,
                 log_every=50, eval_every=200, checkpoint_every=200, eval_batch_size=32)
  return c
