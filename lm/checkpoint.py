"""Checkpoints: the train state and the data iterator saved together with orbax, restored to resume exactly."""
from __future__ import annotations

import os
from typing import Any

import grain
import orbax.checkpoint as ocp


class Checkpointer:
  """Wraps an orbax `CheckpointManager` over `directory`, keeping the `keep` most recent steps.

  Saves are asynchronous: training continues while a step is written, and `wait()` blocks until it is on disk.
  """

  def __init__(self, directory: str, *, keep: int, async_save: bool = True, read_only: bool = False):
    self.directory = os.path.abspath(directory)
    self._manager = ocp.CheckpointManager(
        self.directory,
        options=ocp.CheckpointManagerOptions(
            preservation_policy=ocp.checkpoint_managers.LatestN(keep),
            enable_async_checkpointing=async_save,
            read_only=read_only,  # Readers (sampling, evaluation) can never delete or write a step.
            create=not read_only))

  def latest_step(self) -> int | None:
    return self._manager.latest_step()

  def save(self, step: int, state: Any, data_iterator: Any) -> None:
    self._manager.save(step, args=ocp.args.Composite(
        state=ocp.args.StandardSave(state), data=grain.checkpoint.CheckpointSave(data_iterator)), force=True)

  def restore(self, step: int, target_state: Any = None, data_iterator: Any = None) -> Any:
    """Returns the state saved at `step`, laid out like `target_state` (None: as saved, arrays in a dict tree).

    With `data_iterator`, also sets it to its saved position; without, only the state is read (for sampling).
    """
    items = {'state': ocp.args.StandardRestore(target_state)}
    if data_iterator is not None:
      items['data'] = grain.checkpoint.CheckpointRestore(data_iterator)
    try:
      restored = self._manager.restore(step, args=ocp.args.Composite(**items))
    except Exception as e:  # orbax raises many types for unreadable or mismatched files.
      raise RuntimeError(
          f'cannot restore checkpoint step {step} from {self.directory}/{step}: {type(e).__name__}: {e}\n'
          'The checkpoint may be corrupt or from a different model config. Nothing was deleted; move that step '
          'directory aside to resume from an earlier step, or use a new --workdir.') from e
    return restored.state

  def wait(self) -> None:
    self._manager.wait_until_finished()

  def close(self) -> None:
    self._manager.close()
