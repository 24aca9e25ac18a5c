"""Checkpoints: the train state and the data iterator saved together with orbax, restored to resume exactly.

A step that cannot be read (files deleted, truncated or garbage) is told apart from one of another model (its
saved shapes differ from the target's): `restore_newest` moves the first kind aside to `unrestorable-<step>/`
beside the steps, never deleting it, and falls back to the step before; the second kind is a config mistake and
stops. A save that fails for lack of space raises `errors.DiskFullError` naming the step kept.
"""
from __future__ import annotations

import contextlib
import errno
import os
import sys
from typing import Any, Callable, Iterator

from etils import epath
import grain
import jax
from jax.experimental import multihost_utils
import orbax.checkpoint as ocp

from lm import errors

# A step moved aside is `unrestorable-<step>`: orbax takes only digits for a step and '<step>.orbax-checkpoint-tmp'
# for an unfinished one, so it neither lists, cleans up nor deletes these.
UNRESTORABLE_PREFIX = 'unrestorable-'
# What a write out of space fails with: the OSError's errno, or its text inside tensorstore's ValueError
# ("RESOURCE_EXHAUSTED: ... No space left on device [os_error_code='28']").
OUT_OF_SPACE = (errno.ENOSPC, errno.EDQUOT)


class UnreadableCheckpoint(errors.CheckpointError):
  """A step whose files cannot be read (deleted, truncated, garbage); not one of another model."""

  def __init__(self, step: int, path: str, reason: str):
    super().__init__(
        f'cannot read checkpoint step {step} in {path}: {reason}\nIts files are missing, truncated or damaged. '
        f'Training in this run directory moves such a step aside to {os.path.dirname(path)}/{UNRESTORABLE_PREFIX}'
        f'{step}/ and resumes from the step before; to read an earlier step without training, move it aside '
        'yourself.')
    self.reason = reason


def out_of_space(e: BaseException) -> BaseException | None:
  """The exception in `e`'s chain (itself, what it was raised from or while handling) that is a write out of
  space, or None."""
  seen, todo = set(), [e]
  while todo:
    e = todo.pop()
    if e is None or id(e) in seen:
      continue
    seen.add(id(e))
    if (isinstance(e, OSError) and e.errno in OUT_OF_SPACE) or any(os.strerror(c) in str(e) for c in OUT_OF_SPACE):
      return e
    todo += [e.__cause__, e.__context__, *getattr(e, 'exceptions', ())]  # `exceptions`: an ExceptionGroup's.
  return None


class Checkpointer:
  """Wraps an orbax `CheckpointManager` over `directory`, keeping the `keep` most recent steps and `keep_steps`.

  Saves are asynchronous: training continues while a step is written, and `wait()` blocks until it is on disk. A
  failed write surfaces at `wait()` or at the next `save()`; after it the checkpointer can only be closed. A
  writer removes the unfinished steps a killed process left (`<step>.orbax-checkpoint-tmp`) when it starts.
  """

  def __init__(self, directory: str, *, keep: int, keep_steps: tuple[int, ...] = (), async_save: bool = True,
               read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self._read_only = read_only
    self._writing_step = None  # The step whose asynchronous save may still be running.
    self._failed = False  # A write failed and was raised: close() must not raise it again.
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.AnyPreservationPolicy([  # The latest, and keep_steps.
                ocp.checkpoint_managers.LatestN(keep), ocp.checkpoint_managers.CustomSteps(list(keep_steps))]),
            enable_async_checkpointing=async_save,
            read_only=read_only,  # Readers (sampling, evaluation) can never delete or write a step.
            create=not read_only,
            cleanup_tmp_directories=not read_only))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any) -> None:
    """Saves `state` and the iterator's position (None: the state only, as an imported checkpoint has)."""
    self.wait()  # The previous step's failure, if any, is raised as that step's.
    items = {'state': ocp.args.StandardSave(state)}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointSave(data_iterator)
    with self._writing(step):
      self._manager.save(step, args=ocp.args.Composite(**items), force=True)
    self._writing_step = step

  def restore(self, step: int, target_state: Any = None, data_iterator: Any = None) -> Any:
    """Returns the state saved at `step`, laid out like `target_state` (None: as saved, arrays in a dict tree).

    With `data_iterator`, also sets it to its saved position; without, only the state is read (for sampling).
    Raises `UnreadableCheckpoint` if the step's files cannot be read, `errors.CheckpointError` if they hold
    other shapes than `target_state`'s (another model or optimizer config).
    """
    items = {'state': ocp.args.StandardRestore(target_state)}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    _quiet_closed_loop_callbacks()  # Before: the first may come while orbax still raises.
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax raises many types (ValueError, KeyError, JSONDecodeError...) for both kinds.
      if target_state is not None:
        self._check_same_shapes(step, target_state)
      raise UnreadableCheckpoint(step, self._step_path(step), f'{type(e).__name__}: {_brief(e)}') from e
    return restored.state

  def _check_same_shapes(self, step: int, target_state: Any) -> None:
    """Raises CheckpointError if `step`'s metadata reads and names other arrays or shapes than `target_state`.

    Only the metadata (`state/_METADATA`) is compared: unreadable metadata says nothing about the config.
    """
    try:
      with contextlib.closing(ocp.StandardCheckpointHandler()) as handler:
        saved = _shapes(handler.metadata(epath.Path(self._step_path(step)) / 'state').tree)
    except Exception:  # Unreadable: the caller reports the step as damaged.
      return
    wanted = _shapes(target_state)
    for name in sorted(saved.keys() | wanted.keys()):
      if saved.get(name) != wanted.get(name):
        raise errors.CheckpointError(
            f'checkpoint step {step} in {self._step_path(step)} is of another model or optimizer: {name} has shape '
            f'{saved.get(name, "(missing)")} there but {wanted.get(name, "(missing)")} in this config. Resume '
            'with the config the run was trained with, or train in a new --workdir. Nothing was moved or deleted.')

  def restore_newest(self, target_state: Any, data_iterator: Any, *,
                     warn: Callable[[str], None] = print) -> tuple[Any, int | None]:
    """(state, step) of the newest step that restores. Each newer one that cannot be read is moved aside to
    `unrestorable-<step>/` (never deleted), with a `warn`ing. (None, None) if no step is left. A step of another
    model raises `errors.CheckpointError` and stays where it is."""
    while (step := self.latest_step()) is not None:
      try:
        return self.restore(step, target_state, data_iterator), step
      except UnreadableCheckpoint as e:
        warn(f'warning: cannot read checkpoint step {step} in {self._step_path(step)} ({e.reason}): moved it '
             f'aside to {self.move_aside(step)} (kept, never deleted); trying the step before.')
    return None, None

  def move_aside(self, step: int) -> str:
    """Renames `step`'s directory to `unrestorable-<step>` (or `unrestorable-<step>-N` if taken); returns it."""
    assert not self._read_only, 'a read-only checkpointer moves nothing'
    target = base = self._step_path(f'{UNRESTORABLE_PREFIX}{step}')
    taken = 0
    while os.path.exists(target):  # Moved aside before (the step redone, unreadable again): keep both.
      taken += 1
      target = f'{base}-{taken}'
    if jax.process_index() == 0:  # Every process failed to read the step; one renames it.
      os.rename(self._step_path(step), target)
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices(f'lm.checkpoint.move_aside.{step}')
    self._manager.reload()  # Its step list is cached.
    return target

  def moved_aside(self) -> list[str]:
    """The directories of the steps moved aside so far, by name."""
    if not os.path.isdir(self.directory):
      return []
    return sorted(os.path.join(self.directory, name) for name in os.listdir(self.directory)
                  if name.startswith(UNRESTORABLE_PREFIX))

  def wait(self) -> None:
    if self._writing_step is None or self._failed:
      return
    with self._writing(self._writing_step):
      self._manager.wait_until_finished()
    self._writing_step = None

  @contextlib.contextmanager
  def _writing(self, step: int) -> Iterator[None]:
    """Turns a write of `step` that ran out of space into `errors.DiskFullError`; any failure is raised once."""
    try:
      yield
    except Exception as e:
      self._failed = True
      if (cause := out_of_space(e)) is not None:
        raise self._disk_full(step, cause) from e
      raise

  def _disk_full(self, step: int, cause: BaseException) -> errors.DiskFullError:
    self._manager.reload()  # Only finished steps: orbax commits a step by renaming its temporary directory.
    newest = self._manager.latest_step()
    kept = (f'The newest complete checkpoint, step {newest}, is kept in {self._step_path(newest)}; free space, '
            'then rerun the same command to resume from it' if newest is not None else
            'No complete checkpoint is kept; free space, then rerun the same command to start again')
    error = errors.DiskFullError(
        f'no space left on the disk of {self.directory}: writing checkpoint step {step} to {self._step_path(step)} '
        f'failed ({type(cause).__name__}: {_brief(cause)}). {kept} (the rerun removes the unfinished step).')
    error.errno = errno.ENOSPC  # For callers that test it; the message stays the text above.
    return error

  def _step_path(self, step: int | str) -> str:
    return os.path.join(self.directory, str(step))

  def close(self) -> None:
    try:
      self._manager.close()
    except Exception:
      if not self._failed:  # orbax raises a failed save again at close; it was raised once already.
        raise


def _shapes(tree: Any) -> dict[str, tuple[int, ...]]:
  """{'params/block_0/mlp/wi/kernel': shape, ...} of a state or of orbax's metadata tree of one."""
  def name(key):
    return str(getattr(key, 'key', getattr(key, 'idx', getattr(key, 'name', key))))

  return {'/'.join(name(k) for k in path): tuple(getattr(leaf, 'shape', ()))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _quiet_closed_loop_callbacks() -> None:
  """After a failed restore, tensorstore reads still in flight complete onto the asyncio loop orbax has closed;
  each prints a stack ('Event loop is closed') through sys.unraisablehook, after the clean error. Drop those
  only; any other unraisable exception goes to the hook there was."""
  previous = sys.unraisablehook
  if getattr(previous, 'quiets_closed_loops', False):
    return

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and str(unraisable.exc_value) == 'Event loop is closed'):
      previous(unraisable)
  hook.quiets_closed_loops = True
  sys.unraisablehook = hook


def _brief(e: BaseException) -> str:
  """`e`'s first line without the tensorstore spec (a page of JSON) that tensorstore's errors end with."""
  return str(e).strip().partition('\n')[0].partition(' [tensorstore_spec')[0]
