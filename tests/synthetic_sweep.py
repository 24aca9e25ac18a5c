"""A sweep directory with the files `./run.sh sweep` leaves (study.json, run directories with config.json, a
tokenizer and metrics.jsonl), whose losses follow a known law: L(N, D) = E + A/N^alpha + B/D^beta with 1% noise.
What notebooks/scaling_laws.ipynb runs on in the test suite, in a second instead of an hour of training."""
import json
import os

import numpy as np

from lm import config as config_lib
from lm import flops
from lm import results
from lm import rundir
from lm import tokenizers

# Chinchilla's exponents and A/B ratio (Besiroglu et al.'s refit), so its optimum (~20 tokens a parameter) falls
# inside these sizes at these budgets; A and B scaled by 0.1 and E set to 1 for losses of a few nats.
LAW = {'E': 1.0, 'A': 48.2, 'B': 208.5, 'alpha': 0.35, 'beta': 0.37}
SHAPES = [(1, 32, 2), (2, 48, 2), (2, 96, 4), (3, 128, 4), (4, 192, 4), (5, 256, 4)]  # (layers, width, heads)
STEPS = [200, 400, 800, 1600]
TOKENS_PER_STEP = 2048
VOCAB_TEXT = 'abcdefghijklmnopqrstuvwxyz ,.\n'


def law(params, tokens):
  return LAW['E'] + LAW['A'] / params ** LAW['alpha'] + LAW['B'] / tokens ** LAW['beta']


def make(sweep_dir: str, seed: int = 0) -> None:
  rng = np.random.default_rng(seed)
  tokenizer = tokenizers.make_tokenizer('char', [VOCAB_TEXT])
  specs = []
  for layers, width, heads in SHAPES:
    for steps in STEPS:
      name = f'layers-{layers}_width-{width}_steps-{steps}'
      overrides = {'model.num_layers': layers, 'model.d_model': width, 'model.num_heads': heads,
                   'train.num_steps': steps}
      specs.append({'name': name, 'overrides': overrides, 'parent': '', 'fork_step': 0})
      _write_run(results.run_dir(sweep_dir, name), overrides, tokenizer, rng)
  with open(os.path.join(sweep_dir, results.STUDY_FILE), 'w') as f:
    json.dump({'study': 'synthetic', 'experiment': 'experiments/shakespeare.py', 'resources': {}, 'runs': specs}, f)


def _write_run(workdir, overrides, tokenizer, rng):
  os.makedirs(workdir)
  config = config_lib.defaults()
  for key, value in overrides.items():
    section, name = key.split('.')
    config[section][name] = value
  config.model.dtype = 'float32'
  rundir.write_config(workdir, config)
  tokenizer.save(os.path.join(workdir, rundir.TOKENIZER_DIR))
  params = flops.param_counts(rundir.build_model(config, tokenizer.vocab_size).config).non_embedding
  rows = [{'step': 0, 'split': 'setup', 'non_embedding_params': params}]
  steps = config.train.num_steps
  for step in range(steps // 4, steps + 1, steps // 4):
    tokens = step * TOKENS_PER_STEP
    loss = law(params, tokens) * (1 + 0.01 * rng.standard_normal())
    rows.append({'step': step, 'split': 'train', 'loss': loss, 'tokens_seen': tokens, 'flops_seen': 6 * params * tokens,
                 'tokens_per_s': 1e4, 'mfu': 0.1, 'wall_s': step / 10})
    rows.append({'step': step, 'split': 'validation', 'loss': loss, 'bits_per_byte': loss / np.log(2),
                 'tokens_seen': tokens, 'wall_s': step / 10})
  with open(os.path.join(workdir, rundir.METRICS_FILE), 'w') as f:
    f.writelines(json.dumps(row) + '\n' for row in rows)
