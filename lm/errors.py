"""Expected errors: what a person did or must do (bad input, a missing or busy run directory, an unrestorable
checkpoint, a full disk). `lm.main` prints their message as one `error: ...` block without a traceback
(`--traceback` shows it); any other exception is a bug and keeps its traceback.

Each subclasses the builtin type its callers already catch, so `except ValueError` still sees a bad value.
This module imports nothing: every module may raise these.
"""


class UserError(Exception):
  """An expected error; its message says what is wrong, why, and what to do."""


class InputError(UserError, ValueError):
  """A value the code cannot use: a config key, a file's contents, a command-line argument."""


class MissingError(UserError, FileNotFoundError):
  """A file or directory that should exist does not."""


class OfflineError(UserError, RuntimeError):
  """Data or a package that must be downloaded cannot be: no network."""


class WorkdirBusy(UserError):
  """Another process is training in the run directory."""


class CheckpointError(UserError, RuntimeError):
  """A checkpoint cannot be restored or written."""


class DiskFullError(UserError, OSError):
  """A write failed for lack of space."""


class NonFiniteLoss(UserError, FloatingPointError):
  """The loss or the gradient norm is NaN or infinite."""


class Stopped(Exception):
  """Not an error: a run stopped by SIGTERM or SIGINT after saving its state; main exits REQUEUE_EXIT_CODE."""


# The exit status of a run stopped by SIGTERM or SIGINT after saving its state: a wrapper or scheduler can requeue on it
# (EX_TEMPFAIL of sysexits.h: a temporary failure, try again).
REQUEUE_EXIT_CODE = 75
