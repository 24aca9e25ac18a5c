"""What a run resolves once, at its first start, and records in config.json, so that a resumed run computes as
before: model.dtype 'auto' (lm/hardware.py's probe), the shape of a model.size, train.num_steps fitted to
train.time_budget_s. Every process of a multi-host run takes process 0's answer (`process_0s`)."""
from __future__ import annotations

import os
import time
from typing import Any

import jax
from jax.experimental import multihost_utils
import ml_collections
import numpy as np

from lm import hardware
from lm import model as model_lib
from lm import parallel
from lm import rundir


def resolve_dtype(config: ml_collections.ConfigDict, workdir: str) -> tuple[ml_collections.ConfigDict, str]:
  """(`config` with model.dtype 'auto' resolved, how). A run resolves it once, at its first start, and
  config.json keeps the answer: a resumed run reads it back, so it computes as before and never probes again.
  Every process of a multi-host run takes process 0's answer."""
  if config.model.dtype != 'auto':
    return config, 'set by the config'
  saved = os.path.join(workdir, rundir.CONFIG_FILE)
  recorded = rundir.load_config(workdir).model.dtype if os.path.exists(saved) else 'auto'
  if recorded != 'auto':
    dtype, source = recorded, f'auto, recorded in {saved} at the run\'s first start'
  else:
    dtype, source = hardware.resolve_dtype('auto'), f'auto: {hardware.describe_auto()}'
  dtype = hardware.DTYPES[process_0s(hardware.DTYPES.index(dtype))]
  config = config.copy_and_resolve_references()
  config.model.dtype = dtype
  return config, source


def resolve_size(config: ml_collections.ConfigDict, workdir: str | None = None
                 ) -> tuple[ml_collections.ConfigDict, str]:
  """(`config` with the model shape keys it leaves at 0 filled in, how), so that the checks see the shape and
  config.json records it. They take model.size's ladder values (config.UNSIZED_SHAPE's without a size), or on a
  resume of the same size the values its config.json recorded: a run rebuilds its own model even if the ladder
  changed since. Keys the config sets stay as they are: they beat the size."""
  filled = model_lib.shape_values(config.model)
  if not filled:
    return config, 'every shape key set by the config'
  source = 'from the ladder' if config.model.size else 'the unsized default'
  saved = os.path.join(workdir, rundir.CONFIG_FILE) if workdir else ''
  if saved and os.path.exists(saved) and (recorded := rundir.load_config(workdir).model).size == config.model.size:
    filled, source = {key: recorded[key] for key in filled}, f'recorded in {saved} at the run\'s first start'
  config = config.copy_and_resolve_references()
  config.model.update({key: process_0s(value) for key, value in filled.items()})
  return config, ', '.join(f'{key}={value}' for key, value in config.model.items() if key in filled) + f' {source}'


def fit_steps_to_budget(config: ml_collections.ConfigDict, workdir: str, launcher: parallel.Launcher,
                        train_iter: Any, *, fresh: bool) -> tuple[ml_collections.ConfigDict, str]:
  """(`config` with train.num_steps fitted to train.time_budget_s, how). A fresh run times its own compiled
  step on real batches (from a throwaway state; the iterator is rewound after) and takes the steps that fit
  the budget, at most train.num_steps; a resumed run reads them back from config.json (still at most
  train.num_steps)."""
  t = config.train
  if not fresh:  # train.num_steps still caps it: resuming with a nearer finish line works as without a budget.
    steps = min(rundir.load_config(workdir).train.num_steps, t.num_steps)
    source = f'fitted at the run\'s first start; at most {t.num_steps}'
  else:
    data_state = train_iter.get_state()
    state = launcher.init(jax.random.PRNGKey(config.seed))
    state, metrics = launcher.step(state, next(train_iter))  # Compiles.
    jax.block_until_ready(metrics)
    timed, start = 0, time.perf_counter()
    while timed < 5 or (time.perf_counter() - start < 2.0 and timed < 100):
      state, metrics = launcher.step(state, next(train_iter))
      timed += 1
    jax.block_until_ready(metrics)
    step_s = (time.perf_counter() - start) / timed
    del state
    train_iter.set_state(data_state)
    steps = min(t.num_steps, max(1, int(t.time_budget_s / step_s)))
    source = (f'time_budget_s={t.time_budget_s:g} at {step_s * 1e3:.1f} ms per step, timed over {timed} steps; '
              f'at most {t.num_steps}')
  config = config.copy_and_resolve_references()
  config.train.num_steps = process_0s(steps)
  return config, source


def process_0s(value: int) -> int:
  """Process 0's `value` on every process: what one process measured, all must agree on."""
  if jax.process_count() == 1:
    return value
  return int(multihost_utils.broadcast_one_to_all(np.int32(value)))
