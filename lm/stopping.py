"""Stopping a run on SIGTERM or SIGINT: where a scheduler preempts it or a person presses Ctrl-C.

`stop_requests()` installs the handler for a run (lm/train.py); the loop reads the request after each step and
marks the phases a signal may cut short (`StopRequests.interruptible`). This module imports nothing from `lm`.
"""
from __future__ import annotations

import contextlib
import os
import signal
import time
from typing import Any


class StopRequested(BaseException):
  """Raised by the signal handler in an interruptible phase. A BaseException, so `except Exception` in library
  code (a data reader, a metric) cannot swallow it."""


class StopRequests:
  """The run's signal state. The first SIGINT or SIGTERM asks it to stop: outside an `interruptible` phase (a
  train step, a checkpoint write) after the current step; inside one (setup, validation, the sample) at once, by
  raising StopRequested there. A second signal exits the process at once (status 128 + signal number): a
  checkpoint being written is left unfinished, which resuming ignores; the finished ones are intact."""

  def __init__(self):
    self.signal: str | None = None  # The name of the first signal received.
    self.received_at = 0.0
    self._phase: str | None = None

  def __bool__(self) -> bool:
    return self.signal is not None

  def handle(self, signum: int, frame: Any) -> None:
    name = signal.Signals(signum).name
    if self.signal is not None:
      _say(f'received a second signal ({name}): exiting now')
      os._exit(128 + signum)
    self.signal, self.received_at = name, time.perf_counter()
    if self._phase is not None:
      _say(f'received {name} during {self._phase}: stopping it, saving the state if it is not saved, then exiting')
      raise StopRequested
    _say(f'received {name}: saving a checkpoint after this step, then exiting')

  @contextlib.contextmanager
  def interruptible(self, phase: str):
    """A signal inside this block stops it at once (at the next Python bytecode: within a batch or a file); one
    received before it (in a checkpoint write, say) stops it before it starts."""
    if self.signal is not None:
      raise StopRequested
    previous, self._phase = self._phase, phase
    try:
      yield
    finally:
      self._phase = previous


def _say(message: str) -> None:
  """Writes straight to stdout's file descriptor: print() in a handler raises if the signal lands in a print."""
  os.write(1, f'\n{message}\n'.encode())


@contextlib.contextmanager
def stop_requests():
  """A StopRequests with its handler installed for SIGINT and SIGTERM (none outside the main thread, e.g. a
  notebook's worker: no graceful stop there)."""
  stop, previous = StopRequests(), {}
  try:
    for sig in (signal.SIGINT, signal.SIGTERM):
      previous[sig] = signal.signal(sig, stop.handle)
  except ValueError:  # Not the main thread.
    pass
  try:
    yield stop
  finally:
    for sig, old in previous.items():
      signal.signal(sig, old)
