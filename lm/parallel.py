"""Device layouts: the mesh, logical-axis rules, pmap helpers and multi-host start-up.

Three launchers run the same `train_step`:
  single  one device, plain `jax.jit`;
  pmap    `jax.pmap` data parallel: replicated state, the batch split over local devices, gradient sums
          combined with `lax.psum` inside the step (as the classic flax examples do);
  mesh    `jax.jit` over a `Mesh` with axes (data, fsdp, tensor): params and optimizer state sharded by
          logical-axis rules (FSDP shards the model width, tensor parallelism shards heads and MLP width),
          the batch split over data x fsdp, collectives inserted by XLA (GSPMD).
"""
from __future__ import annotations

import contextlib
import functools
import os
from typing import Any, Sequence

import flax.jax_utils
import flax.linen as nn
import jax
from jax.sharding import AxisType
from jax.sharding import Mesh
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
import numpy as np

from lm import config as config_lib

MESH_AXES = ('data', 'fsdp', 'tensor')
BATCH_AXES = ('data', 'fsdp')  # The batch dimension is split over both: FSDP is data parallel too.
PMAP_AXIS = 'batch'

# Logical parameter axes (named in lm/layers.py and lm/model.py) -> mesh axes. The vocabulary stays whole:
# small vocabularies rarely divide the tensor axis.
LOGICAL_RULES = (
    ('embed', 'fsdp'),
    ('heads', 'tensor'),
    ('mlp', 'tensor'),
    ('vocab', None),
    # Activations: split by batch, whole in width. Without these, GSPMD may follow the params' 'embed'
    # sharding and gather whole activations onto every FSDP device instead of gathering the weights.
    ('batch', BATCH_AXES),
    ('length', None),
    ('act_embed', None),
)
STRATEGIES = config_lib.CHOICES['parallel.strategy']


def make_mesh(mesh_shape: Sequence[int], devices: Sequence[Any] | None = None) -> Mesh:
  """A (data, fsdp, tensor) mesh; one entry may be -1 to take the devices left over."""
  devices = list(jax.devices() if devices is None else devices)
  shape = list(mesh_shape)
  key, value = 'parallel.mesh_shape', tuple(mesh_shape)
  config_lib.check(len(shape) == len(MESH_AXES), key, value, f'needs {len(MESH_AXES)} entries {MESH_AXES}')
  config_lib.check(shape.count(-1) <= 1 and all(s > 0 or s == -1 for s in shape), key, value,
                   'entries must be positive, at most one -1')
  known = int(np.prod([s for s in shape if s != -1]))
  if -1 in shape:
    config_lib.check(len(devices) % known == 0, key, value, f'does not divide {len(devices)} devices')
    shape[shape.index(-1)] = len(devices) // known
  config_lib.check(int(np.prod(shape)) == len(devices), key, value,
                   f'needs {int(np.prod(shape))} devices, have {len(devices)}')
  return jax.make_mesh(tuple(shape), MESH_AXES, axis_types=(AxisType.Auto,) * len(MESH_AXES),
                       devices=devices)


def shardings_from_logical(boxed_tree: Any, mesh: Mesh) -> Any:
  """NamedShardings for a tree whose leaves carry flax logical-axis metadata (others are replicated)."""
  specs = nn.get_partition_spec(boxed_tree)
  return nn.logical_to_mesh_sharding(specs, mesh, LOGICAL_RULES)


@contextlib.contextmanager
def activation_sharding(mesh: Mesh):
  """Trace inside this so the model's activation constraints (`nn.with_logical_constraint`) apply on `mesh`;
  outside it they are no-ops."""
  with jax.set_mesh(mesh), nn.logical_axis_rules(LOGICAL_RULES):
    yield


def batch_sharding(mesh: Mesh) -> NamedSharding:
  return NamedSharding(mesh, P(BATCH_AXES))


def unreplicate(tree: Any) -> Any:
  return jax.tree.map(lambda x: x[0], tree)


def split_for_pmap(batch: dict[str, np.ndarray], num_devices: int) -> dict[str, np.ndarray]:
  """[B, ...] -> [devices, B / devices, ...]."""
  return {k: v.reshape(num_devices, v.shape[0] // num_devices, *v.shape[1:]) for k, v in batch.items()}


# What jax.distributed reads of a SLURM job step (a task of `srun`). A batch script or an salloc shell has
# SLURM_JOB_ID but no step: there jax finds no cluster, and the one process must run alone.
SLURM_STEP_VARIABLES = ('SLURM_JOB_ID', 'SLURM_STEP_NODELIST', 'SLURM_NTASKS', 'SLURM_PROCID', 'SLURM_LOCALID')


def initialize_distributed(coordinator_address: str, num_processes: int, process_id: int,
                           timeout_s: int = 300) -> None:
  """Starts multi-host JAX when asked, by flags or by the environment SLURM and TPU VMs set.

  With an explicit coordinator, all three values come from the config; otherwise `jax.distributed` reads
  SLURM (a step of several tasks) / TPU / Open MPI variables itself. A single process with none of these,
  or a SLURM batch script's own process, does nothing.
  """
  if coordinator_address:
    jax.distributed.initialize(coordinator_address=coordinator_address, num_processes=num_processes,
                               process_id=process_id, initialization_timeout=timeout_s)
  elif _in_slurm_step_of_several_tasks() or any(k in os.environ for k in ('TPU_WORKER_HOSTNAMES',
                                                                          'OMPI_COMM_WORLD_SIZE')):
    jax.distributed.initialize(initialization_timeout=timeout_s)


def _in_slurm_step_of_several_tasks() -> bool:
  return all(k in os.environ for k in SLURM_STEP_VARIABLES) and int(os.environ['SLURM_NTASKS']) > 1


class Launcher:
  """Runs one pure step function on the devices under a strategy ('single', 'pmap' or 'mesh').

  `step_fn(state, batch, axis_name=None) -> (state, metrics)` and `eval_fn(params, batch, axis_name=None)
  -> sums` are written once; under pmap they get `axis_name` and combine across devices with `lax.psum`.
  Checkpoints always hold one unreplicated copy, so any strategy restores what any other saved.
  """

  def __init__(self, strategy: str, mesh_shape: Sequence[int], *, init_fn, boxed_init_fn, step_fn, eval_fn):
    config_lib.check(strategy in STRATEGIES, 'parallel.strategy', strategy, f'must be one of {STRATEGIES}')
    self.strategy = strategy
    self.step_traces = 0  # How often the step was traced: 1 after any number of steps, or it recompiles.

    pure_step = step_fn

    def step_fn(*args, **kwargs):  # Runs only when jax traces the step.
      self.step_traces += 1
      return pure_step(*args, **kwargs)

    if strategy == 'pmap':  # Over mesh_shape[0] local devices (-1: all of them).
      self.devices = jax.local_devices()[:mesh_shape[0]] if mesh_shape[0] > 0 else jax.local_devices()
      self.num_shards = len(self.devices)
      self._step = jax.pmap(functools.partial(step_fn, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS,
                            donate_argnums=0, devices=self.devices)
      self._eval = jax.pmap(functools.partial(eval_fn, axis_name=PMAP_AXIS), axis_name=PMAP_AXIS,
                            devices=self.devices)
      self._init = jax.jit(init_fn)
      return
    devices = jax.devices()[:1] if strategy == 'single' else None
    self.mesh = make_mesh((1, 1, 1) if strategy == 'single' else mesh_shape, devices)
    self.num_shards = self.mesh.shape['data'] * self.mesh.shape['fsdp']
    self.state_shardings = shardings_from_logical(jax.eval_shape(boxed_init_fn, jax.random.PRNGKey(0)),
                                                  self.mesh)
    self._batch_sharding = batch_sharding(self.mesh)
    self._init = jax.jit(init_fn, out_shardings=self.state_shardings)
    self._step = jax.jit(step_fn, in_shardings=(self.state_shardings, self._batch_sharding),
                         out_shardings=(self.state_shardings, None), donate_argnums=0)
    self._eval = jax.jit(eval_fn, in_shardings=(self.state_shardings.params, self._batch_sharding))

  def init(self, rng) -> Any:
    return self.from_checkpoint(self._init(rng))

  def place_batch(self, batch: dict[str, np.ndarray]) -> Any:
    """This process's rows -> the step's input layout (a global array under 'mesh')."""
    if self.strategy == 'pmap':
      return split_for_pmap(batch, self.num_shards)
    return {k: jax.make_array_from_process_local_data(self._batch_sharding, v) for k, v in batch.items()}

  def step(self, state, batch):
    state, metrics = self.step_placed(state, self.place_batch(batch))
    return state, self._local(metrics)

  def step_placed(self, state, placed_batch):
    """The step on a batch already in the step's layout (`place_batch`); metrics stay on the devices."""
    with self._context():
      return self._step(state, placed_batch)

  def evaluate(self, state, batch):
    with self._context():
      return self._local(self._eval(state.params, self.place_batch(batch)))

  def _context(self):
    """Where the step is traced: with the mesh's activation constraints, or none under pmap."""
    return contextlib.nullcontext() if self.strategy == 'pmap' else activation_sharding(self.mesh)

  def _local(self, replicated_scalars):
    """Metrics (identical on every device) as arrays this process can read."""
    if self.strategy == 'pmap':
      return unreplicate(replicated_scalars)
    return jax.tree.map(lambda x: x.addressable_data(0), replicated_scalars)

  def to_checkpoint(self, state):
    """The state as saved: one copy (pmap keeps one per device)."""
    return unreplicate(state) if self.strategy == 'pmap' else state

  def from_checkpoint(self, restored):
    if self.strategy != 'pmap':
      return restored
    # Through a pmapped identity, so the state carries the same sharding as the step's outputs; with the
    # sharding `replicate` gives, the second step would compile again.
    identity = jax.pmap(lambda x: x, axis_name=PMAP_AXIS, devices=self.devices)
    return identity(flax.jax_utils.replicate(restored, self.devices))
