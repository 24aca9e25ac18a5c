"""One train step, three launchers: the losses must not depend on the device layout (8 fake CPU devices)."""
import functools

import jax
import jax.numpy as jnp
from jax.sharding import PartitionSpec as P
import numpy as np
import pytest
from test_model import remat_policies  # The model tests' jaxpr walker.

from experiments import base
from lm import checkpoint as checkpoint_lib
from lm import errors
from lm import model as model_lib
from lm import optim
from lm import parallel
from lm import rundir
from lm import step as step_lib
from lm import stopping
from lm import train

VOCAB, SEQ_LEN, BATCH = 29, 16, 16


def make_model_and_optimizer(**model_overrides):
  c = base.get_config()
  # float32 unless a test asks: the strategies' parity is checked to float32 precision.
  c.model.update(**{'num_layers': 2, 'd_model': 32, 'num_heads': 4, 'd_ff': 64, 'dtype': 'float32', **model_overrides})
  c.data.seq_len = SEQ_LEN
  c.train.update(warmup_steps=0, learning_rate=3e-3)
  return rundir.build_model(c, vocab_size=VOCAB), optim.make_optimizer(c.train)


def make_launcher(strategy, mesh_shape=(-1, 1, 1), grad_accum_steps=1, input_len=0, **model_overrides):
  model, tx = make_model_and_optimizer(**model_overrides)
  token_bytes = jnp.ones(VOCAB)
  return parallel.Launcher(
      strategy, mesh_shape,
      init_fn=functools.partial(step_lib.init_state, model, tx, seq_len=SEQ_LEN, input_len=input_len),
      boxed_init_fn=functools.partial(step_lib.init_state, model, tx, seq_len=SEQ_LEN, input_len=input_len,
                                      boxed=True),
      step_fn=functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=token_bytes,
                                grad_accum_steps=grad_accum_steps),
      eval_fn=functools.partial(step_lib.eval_step, model=model, token_bytes=token_bytes))


def batches(n, seed=0):
  rng = np.random.default_rng(seed)
  out = []
  for _ in range(n):
    tokens = rng.integers(0, VOCAB, (BATCH, SEQ_LEN + 1)).astype(np.int32)
    weights = (rng.random((BATCH, SEQ_LEN)) < 0.9).astype(np.float32)  # Uneven target counts per shard.
    out.append({'decoder_input_tokens': tokens[:, :-1], 'decoder_target_tokens': tokens[:, 1:],
                'decoder_loss_weights': weights, 'decoder_segment_ids': np.ones((BATCH, SEQ_LEN), np.int32),
                'decoder_positions': np.tile(np.arange(SEQ_LEN, dtype=np.int32), (BATCH, 1))})
  return out


def encoder_decoder_batches(n, input_len):
  """`batches` with packed encoder inputs: two segments a row, the second's tail padding."""
  rng = np.random.default_rng(1)
  segment_ids = np.repeat([[1] * (input_len // 2) + [2] * (input_len // 2 - 2) + [0, 0]], BATCH, 0).astype(np.int32)
  decoder_segments = np.repeat([[1] * (SEQ_LEN // 2) + [2] * (SEQ_LEN // 2)], BATCH, 0).astype(np.int32)
  restart = lambda length: np.tile(np.arange(length, dtype=np.int32) % (length // 2), (BATCH, 1))
  return [{**batch, 'encoder_input_tokens': rng.integers(1, VOCAB, (BATCH, input_len)).astype(np.int32),
           'encoder_segment_ids': segment_ids, 'decoder_segment_ids': decoder_segments,
           'encoder_positions': restart(input_len), 'decoder_positions': restart(SEQ_LEN)}
          for batch in batches(n)]


def run(launcher, steps=5, state=None, input_len=0):
  state = launcher.init(jax.random.PRNGKey(0)) if state is None else state
  losses = []
  for batch in encoder_decoder_batches(steps, input_len) if input_len else batches(steps):
    state, metrics = launcher.step(state, batch)
    losses.append(float(metrics['loss']))
  return state, np.array(losses)


@pytest.fixture(scope='module')
def single_losses():
  return run(make_launcher('single'))[1]


@pytest.mark.parametrize('strategy, mesh_shape, accum', [
    ('pmap', (-1, 1, 1), 1),
    ('mesh', (8, 1, 1), 1),
    ('mesh', (1, 8, 1), 1),
    ('mesh', (2, 2, 2), 1),
    ('single', (1, 1, 1), 4),
    ('mesh', (2, 2, 2), 2),
], ids=['pmap8', 'data8', 'fsdp8', 'data2-fsdp2-tensor2', 'accum4', 'mesh222-accum2'])
def test_losses_do_not_depend_on_the_layout(single_losses, strategy, mesh_shape, accum):
  _, losses = run(make_launcher(strategy, mesh_shape, grad_accum_steps=accum))
  assert losses[-1] < losses[0]
  np.testing.assert_allclose(losses, single_losses, rtol=2e-5)


def test_pointer_generator_trains_alike_under_data_fsdp_and_tensor_parallelism():
  """The copy mechanism's scatter onto the vocabulary-split logits gives the single-device losses. One layer
  each side: the scatter follows the last; compiling 2+2 layers twice took 12.7 s of CPU, 1+1 7.7 s."""
  options = dict(architecture='encoder_decoder', pointer_generator=True, input_len=12, num_layers=1)
  _, single = run(make_launcher('single', **options), input_len=12)
  _, sharded = run(make_launcher('mesh', (2, 2, 2), **options), input_len=12)
  assert single[-1] < single[0]
  np.testing.assert_allclose(sharded, single, rtol=2e-5)


def test_params_are_sharded_as_the_rules_say():
  launcher = make_launcher('mesh', (2, 2, 2))
  state = launcher.init(jax.random.PRNGKey(0))
  attention = state.params['block_0']['attention']
  assert attention['query']['kernel'].sharding.spec == P('fsdp', 'tensor')
  assert attention['out']['kernel'].sharding.spec == P('tensor', 'fsdp')
  assert state.params['block_0']['mlp']['wi']['kernel'].sharding.spec == P('fsdp', 'tensor')
  assert state.params['embedding'].sharding.spec == P(None, 'fsdp')
  # Adam's moments shard like the params they follow (FSDP shards optimizer state too).
  mu = state.opt_state[1][0].mu['block_0']['attention']['query']['kernel']
  assert mu.sharding.spec == P('fsdp', 'tensor')
  shard = attention['query']['kernel'].addressable_shards[0].data
  assert shard.shape == (32 // 2, 32 // 2)


def test_checkpoint_saved_under_fsdp_restores_under_single_and_pmap(tmp_path):
  fsdp = make_launcher('mesh', (1, 8, 1))
  state, _ = run(fsdp, steps=2)
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=1)
  ckpt.save(2, fsdp.to_checkpoint(state), _dummy_iterator())
  ckpt.wait()
  next_batch = batches(3)[2]
  _, want = fsdp.step(state, next_batch)
  for strategy, mesh_shape in [('single', (1, 1, 1)), ('pmap', (4, 1, 1))]:
    launcher = make_launcher(strategy, mesh_shape)
    target = launcher.to_checkpoint(launcher.init(jax.random.PRNGKey(1)))
    restored = launcher.from_checkpoint(ckpt.restore(2, target))
    assert int(launcher.to_checkpoint(restored).step) == 2
    _, got = launcher.step(restored, next_batch)
    assert float(got['loss']) == pytest.approx(float(want['loss']), rel=2e-5), strategy
  ckpt.close()


def _dummy_iterator():
  import grain
  return iter(grain.MapDataset.range(4).to_iter_dataset())


def test_no_recompilation_after_the_first_step():
  for strategy, shape in [('mesh', (2, 2, 2)), ('pmap', (-1, 1, 1))]:
    launcher = make_launcher(strategy, shape)
    run(launcher, steps=4)
    assert launcher.step_traces == 1, strategy


def test_bfloat16_stays_close_to_float32_over_20_steps(single_losses):
  _, f32 = run(make_launcher('single'), steps=20)
  _, bf16 = run(make_launcher('single', dtype='bfloat16'), steps=20)
  # bf16 matmul inputs (float32 accumulation) track float32 to within 2% of the loss.
  np.testing.assert_allclose(bf16, f32, rtol=0.02)
  assert bf16[-1] < bf16[0]
  assert np.max(np.abs(bf16 - f32)) > 0, 'bfloat16 was not applied'  # Else float32 ran twice.


@pytest.mark.parametrize('remat', ['full', 'save_matmuls'])
def test_remat_gives_the_same_losses(single_losses, remat):
  _, losses = run(make_launcher('single', remat=remat))
  np.testing.assert_allclose(losses, single_losses, rtol=1e-5)
  # A remat that did nothing would give the same losses: the train step must hold remat equations.
  model, tx = make_model_and_optimizer(remat=remat)
  state = step_lib.init_state(model, tx, jax.random.PRNGKey(0), SEQ_LEN)
  step = functools.partial(step_lib.train_step, model=model, tx=tx, token_bytes=jnp.ones(VOCAB))
  policies = remat_policies(step, state, batches(1)[0])
  assert policies == [model_lib.REMAT_POLICIES[remat]] * 2, policies  # One per block.


def test_bad_mesh_shapes_name_the_value():
  with pytest.raises(ValueError, match=r'mesh_shape=\(3, 1, 1\) needs 3 devices, have 8'):
    parallel.make_mesh((3, 1, 1))
  with pytest.raises(ValueError, match='at most one -1'):
    parallel.make_mesh((-1, -1, 1))
  with pytest.raises(ValueError, match="parallel.strategy='ddp'"):
    make_launcher('ddp')


@pytest.fixture(scope='module')
def corpus(tmp_path_factory):
  root = tmp_path_factory.mktemp('corpus')
  (root / 'corpus.txt').write_text(''.join(f'line {i % 13} of a small corpus.\n' for i in range(300)))
  return root


def test_the_training_loop_runs_and_resumes_across_strategies(corpus, tmp_path, monkeypatch):
  """A run stopped after step 3 under pmap resumes under a (2, 2, 2) mesh and ends as a single-device run."""
  import contextlib

  from test_train import StopAtIteration  # The train tests' stop stand-in.
  from test_train import tiny_config

  def config(strategy, mesh_shape):
    c = tiny_config(corpus, num_steps=6, checkpoint_every=100, eval_every=100, log_every=1)
    c.parallel.update(strategy=strategy, mesh_shape=mesh_shape)
    return c

  single = train.train_and_evaluate(config('single', (1, 1, 1)), str(tmp_path / 'single'))
  with monkeypatch.context() as patch:
    patch.setattr(stopping, 'stop_requests', contextlib.contextmanager(lambda: (yield StopAtIteration(3))))
    with pytest.raises(errors.Stopped):
      train.train_and_evaluate(config('pmap', (-1, 1, 1)), str(tmp_path / 'mixed'))
  mixed = train.train_and_evaluate(config('mesh', (2, 2, 2)), str(tmp_path / 'mixed'))
  assert mixed['loss'] == pytest.approx(single['loss'], rel=1e-4)


# SLURM's variables as each place a training command may run sets them (seen on `./run.sh cluster up`'s cluster).
SLURM_BATCH_SCRIPT = {'SLURM_JOB_ID': '4', 'SLURM_NTASKS': '2', 'SLURM_PROCID': '0', 'SLURM_LOCALID': '0'}
SLURM_STEP = {**SLURM_BATCH_SCRIPT, 'SLURM_STEP_NODELIST': 'vm'}


@pytest.mark.parametrize('env, starts', [
    ({}, False),
    ({'SLURM_JOB_ID': '4'}, False),  # An salloc shell.
    (SLURM_BATCH_SCRIPT, False),  # jax finds no cluster there (no step): it would raise, not run alone.
    ({**SLURM_STEP, 'SLURM_NTASKS': '1'}, False),  # srun -n 1.
    (SLURM_STEP, True),  # srun -n 2.
    ({'TPU_WORKER_HOSTNAMES': 'a,b'}, True),
])
def test_distributed_starts_from_the_environment_only_in_a_multi_process_launch(monkeypatch, env, starts):
  for key in ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS', 'TPU_WORKER_HOSTNAMES', 'OMPI_COMM_WORLD_SIZE'):
    monkeypatch.delenv(key, raising=False)
  for key, value in env.items():
    monkeypatch.setenv(key, value)
  calls = []
  monkeypatch.setattr(jax.distributed, 'initialize', lambda **kwargs: calls.append(kwargs))
  parallel.initialize_distributed('', 1, 0, timeout_s=7)
  assert calls == ([{'initialization_timeout': 7}] if starts else [])  # No coordinator: jax reads the env.


def test_two_processes_train_like_one_and_their_checkpoint_restores_in_one(tmp_path):
  import json
  import os
  import socket
  import subprocess
  import sys
  with socket.socket() as s:
    s.bind(('localhost', 0))
    port = s.getsockname()[1]
  worker = os.path.join(os.path.dirname(__file__), 'multihost_worker.py')
  # The worker fakes its own 4 devices; conftest's other flags (faster compiles) stay.
  flags = [f for f in os.environ.get('XLA_FLAGS', '').split() if 'force_host_platform_device_count' not in f]
  env = {**os.environ, 'XLA_FLAGS': ' '.join(flags)}
  procs = [subprocess.Popen([sys.executable, worker, str(port), str(i), str(tmp_path)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True) for i in range(2)]
  outputs = []
  try:
    for p in procs:
      outputs.append(p.communicate(timeout=240)[0])
  finally:
    for p in procs:  # A dead peer makes the other abort only after a timeout: never leave one behind.
      p.kill()
  for p, out in zip(procs, outputs):
    assert p.returncode == 0, out[-3000:]
  losses = [json.loads(next(l for l in out.splitlines() if l.startswith('LOSSES '))[7:]) for out in outputs]
  assert losses[0] == losses[1]
  state, single = run(make_launcher('mesh', (8, 1, 1)))
  np.testing.assert_allclose(losses[0], single, rtol=1e-5)  # Same to rounding (gloo vs in-process sums).
  ckpt = checkpoint_lib.Checkpointer(str(tmp_path), keep=1, read_only=True)
  single_device = make_launcher('single')
  restored = ckpt.restore(5, single_device.init(jax.random.PRNGKey(1)))  # Onto one device of one process.
  ckpt.close()
  assert int(restored.step) == 5
  # Adam turns rounding-level gradient differences of near-zero params into ~lr/1000 steps: compare
  # params to an absolute tolerance well below one update (lr 3e-3).
  jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=2e-5),
               jax.device_get(restored.params), jax.device_get(state.params))
