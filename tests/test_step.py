"""The pure steps: a golden one-step loss, and label smoothing's objective apart from its logged NLL. (The
steps under every launcher and device layout: test_parallel.py.)"""
import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from experiments import base
from lm import optim
from lm import rundir
from lm import step as step_lib

# Loss after one AdamW step of the tiny model below on a fixed batch. If you change the model, init or
# optimizer on purpose, rerun this test and paste the printed value.
GOLDEN_SECOND_LOSS = 2.2723472


def test_golden_one_step_loss():
  c = base.get_config()
  c.model.update(num_layers=2, d_model=32, num_heads=4, dtype='float32')  # Pinned: 'auto' differs by CPU.
  c.data.seq_len = 16
  c.train.update(warmup_steps=0, learning_rate=1e-2)
  model = rundir.build_model(c, vocab_size=13)
  tx = optim.make_optimizer(c.train)
  # Jitted, as training inits (lm/parallel.py): one compile, where eagerly each op compiles on its own.
  state = jax.jit(functools.partial(step_lib.init_state, model, tx, seq_len=16))(jax.random.PRNGKey(0))
  tokens = np.arange(4 * 17).reshape(4, 17) % 13
  batch = {'decoder_input_tokens': tokens[:, :-1], 'decoder_target_tokens': tokens[:, 1:],
           'decoder_loss_weights': np.ones((4, 16), np.float32), 'decoder_segment_ids': np.ones((4, 16), np.int32),
           'decoder_positions': np.tile(np.arange(16), (4, 1))}
  step = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=jnp.ones(13)))
  state, first = step(state, batch)
  state, second = step(state, batch)
  assert float(first['loss']) == pytest.approx(np.log(13), abs=0.1)  # Near-uniform logits at init.
  assert float(second['loss']) < float(first['loss'])
  assert float(second['loss']) == pytest.approx(GOLDEN_SECOND_LOSS, abs=1e-5), (
      f'second-step loss is {float(second["loss"]):.7f}; update GOLDEN_SECOND_LOSS if the change was intended')


def test_label_smoothing_changes_the_update_not_the_logged_loss():
  c = base.get_config()
  c.model.update(num_layers=1, d_model=16, num_heads=2)
  c.train.update(warmup_steps=0, learning_rate=1e-2)
  model = rundir.build_model(c, vocab_size=13)
  tx = optim.make_optimizer(c.train)
  tokens = np.arange(2 * 9).reshape(2, 9) % 13
  batch = {'decoder_input_tokens': tokens[:, :-1], 'decoder_target_tokens': tokens[:, 1:],
           'decoder_loss_weights': np.ones((2, 8), np.float32)}
  results = {}
  init = jax.jit(functools.partial(step_lib.init_state, model, tx, seq_len=8))
  for smoothing in (0.0, 0.2):
    state = init(jax.random.PRNGKey(0))
    step = jax.jit(functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=jnp.ones(13),
                                     label_smoothing=smoothing))
    results[smoothing] = step(state, batch)
  (plain, plain_metrics), (smooth, smooth_metrics) = results[0.0], results[0.2]
  # The same params before the step: the same logged NLL. Different objectives: different gradients (Adam's
  # first update is about lr * sign(gradient), so the gradient norm tells them apart better than the params).
  assert float(smooth_metrics['loss']) == pytest.approx(float(plain_metrics['loss']), rel=1e-6)
  assert float(smooth_metrics['grad_norm']) != pytest.approx(float(plain_metrics['grad_norm']), rel=1e-3)
  assert not all(np.allclose(a, b) for a, b in zip(jax.tree.leaves(smooth.params), jax.tree.leaves(plain.params)))
