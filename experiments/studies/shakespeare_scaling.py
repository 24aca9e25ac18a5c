"""A Chinchilla-style study on Shakespeare (char level): 5 sizes x 3 token budgets, by WSD cooldown branching.

Run:      ./run.sh sweep experiments/studies/shakespeare_scaling.py        (runs/shakespeare_scaling/)
          ./run.sh results runs/shakespeare_scaling
Hardware: 2-core Intel Xeon VM (Sapphire Rapids-class), float32 (pinned: its runs compare, on any CPU).
Time:     60 minutes of wall time for the 20 runs (5 parents, 15 branches), part of it shared with other jobs.
Expect:   validation 2.38 nats/char (57k params, 600 steps) down to 1.62 (0.6M-4.7M, 2400 steps); Approach 3 alpha 0.67,
          beta 0.72, wide intervals (README: A study); Approach 2 finds no IsoFLOP minimum at this range of D.
Design:   per size one parent at a constant learning rate after warmup to 0.8 x 2400 steps, saving its state at
          each branch point; branches of 600, 1200 and 2400 steps (1.2M, 2.5M, 4.9M tokens of 2,048 per step,
          at most ~1.1 epochs of the 4.3M-token train split) decay linearly over their last 20%. 15 runs of
          N 55k-4.7M non-embedding params (D/N 0.3-90) for the cost of 5 parents plus their cooldowns.
"""

# (layers, width, heads): depth grows with width as in small GPT ladders; head width 32 up to d128, then 48/64.
SHAPES = [(2, 48, 2), (2, 96, 3), (3, 128, 4), (4, 192, 4), (6, 256, 4)]


def get_study():
  return {
      'experiment': 'experiments/shakespeare.py',
      'fixed': {'model.dtype': 'float32', 'train.time_budget_s': 0, 'train.batch_size': 16, 'data.seq_len': 128,
                'train.learning_rate': 3e-3, 'train.warmup_steps': 100, 'train.log_every': 100,
                'train.eval_every': 200, 'train.eval_batches': 20, 'train.checkpoint_every': 600,
                'train.keep_checkpoints': 1, 'decode.sample_num_tokens': 0, 'seed': 0},
      'runs': [{'model.num_layers': layers, 'model.d_model': width, 'model.num_heads': heads}
               for layers, width, heads in SHAPES],
      'cooldowns': {'steps': [600, 1200, 2400], 'fraction': 0.2},
      'resources': {'cpus_per_run': 2, 'time_limit': '2:00:00'},
  }
