import errno
import os

import grain
import jax
import jax.numpy as jnp
import numpy as np
from orbax.checkpoint._src.path import async_path
import pytest

from lm import checkpoint
from lm import errors


def make_iterator():
  return iter(grain.MapDataset.range(100).shuffle(seed=1).to_iter_dataset())


def test_state_and_data_position_restore_together(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  state = {'params': jnp.arange(6.0).reshape(2, 3), 'step': jnp.array(3)}
  data = make_iterator()
  consumed = [next(data) for _ in range(5)]
  ckpt.save(3, state, data)
  expected_next = [next(data) for _ in range(3)]
  ckpt.wait()

  fresh = make_iterator()
  restored = ckpt.restore(3, {'params': jnp.zeros((2, 3)), 'step': jnp.array(0)}, fresh)
  ckpt.close()
  np.testing.assert_array_equal(restored['params'], state['params'])
  assert int(restored['step']) == 3
  assert [next(fresh) for _ in range(3)] == expected_next
  assert consumed != expected_next


def files_under(path):
  return sorted(os.path.relpath(os.path.join(root, name), path) for root, _, names in os.walk(path) for name in names)


def write_garbage(path):
  for name in files_under(path):
    (path / name).write_bytes(b'garbage')


def delete_arrays(step_dir):
  """Deletes the array data of a step's state, keeping its metadata (which still matches the target)."""
  for name in files_under(step_dir / 'state'):
    if name != '_METADATA':
      os.remove(step_dir / 'state' / name)


def test_an_unreadable_step_is_told_apart_from_one_of_another_model(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(1, {'w': jnp.ones(4)}, make_iterator())
  ckpt.wait()
  # Readable files of other shapes or arrays: a config mistake, which must stop the run, not move the step.
  for target, message in (({'w': jnp.zeros(5)}, r'w has shape \(4,\) there but \(5,\) in this config'),
                          ({'w': jnp.zeros(4), 'b': jnp.zeros(2)}, r'b has shape \(missing\) there but \(2,\)')):
    with pytest.raises(errors.CheckpointError, match=r'checkpoint step 1 in \S+/1 is of another model') as error:
      ckpt.restore(1, target, make_iterator())
    assert not isinstance(error.value, checkpoint.UnreadableCheckpoint)
    assert error.match(message) and error.match('Nothing was moved or deleted')
  write_garbage(tmp_path / '1' / 'state')
  for target in ({'w': jnp.zeros(4)}, {'w': jnp.zeros(5)}, None):  # Unreadable metadata tells nothing of shapes.
    with pytest.raises(checkpoint.UnreadableCheckpoint, match=r'(?s)cannot read checkpoint step 1 in \S+/1: .*'
                       r'missing, truncated or damaged.*moves such a step aside to \S+/unrestorable-1/'):
      ckpt.restore(1, target, make_iterator())
  ckpt.close()
  assert files_under(tmp_path / '1' / 'state'), 'a failed restore must never delete the checkpoint'


def save_steps(directory, steps, keep=3):
  """A checkpointer over `directory` that saved {'w': [step] * 4} at each step, the data `step` items on."""
  ckpt = checkpoint.Checkpointer(str(directory), keep=keep)
  data = make_iterator()
  for step in steps:
    while data.get_state() != {'next_index': step}:  # grain's state of this pipeline: the next item's index.
      next(data)
    ckpt.save(step, {'w': jnp.full(4, float(step))}, data)
  ckpt.wait()
  return ckpt


def restore_newest(ckpt):
  data, warnings = make_iterator(), []
  state, step = ckpt.restore_newest({'w': jnp.zeros(4)}, data, warn=warnings.append)
  return state, step, data.get_state(), warnings


def test_unreadable_steps_are_moved_aside_and_the_newest_readable_one_restores(tmp_path):
  ckpt = save_steps(tmp_path, [1, 2, 3])
  delete_arrays(tmp_path / '3')
  write_garbage(tmp_path / '2' / 'data')
  moved_files = {step: files_under(tmp_path / str(step)) for step in (2, 3)}
  state, step, data, warnings = restore_newest(ckpt)
  assert step == 1 and data == {'next_index': 1}
  np.testing.assert_array_equal(state['w'], jnp.full(4, 1.0))
  assert len(warnings) == 2
  for warning, bad in zip(warnings, (3, 2)):
    assert warning.startswith(f'warning: cannot read checkpoint step {bad} in {tmp_path}/{bad} (')
    assert warning.endswith(f'): moved it aside to {tmp_path}/unrestorable-{bad} (kept, never deleted); trying the '
                            'step before.')
  assert sorted(os.listdir(tmp_path)) == ['1', 'unrestorable-2', 'unrestorable-3']
  for bad, files in moved_files.items():
    assert files_under(tmp_path / f'unrestorable-{bad}') == files, 'moved whole'
  assert ckpt.moved_aside() == [f'{tmp_path}/unrestorable-2', f'{tmp_path}/unrestorable-3']
  ckpt.close()
  # orbax neither lists nor deletes them: a new manager sees step 1 only, and its preservation policy (keep 2)
  # deletes steps 1 and 4 as 5 and 6 are saved, never the directories moved aside.
  ckpt = save_steps(tmp_path, [4, 5, 6], keep=2)
  assert sorted(os.listdir(tmp_path)) == ['5', '6', 'unrestorable-2', 'unrestorable-3']
  # A name taken (step 6 unreadable again some day) gets a suffix: nothing is ever overwritten.
  os.mkdir(tmp_path / 'unrestorable-6')
  write_garbage(tmp_path / '6')
  _, step, data, warnings = restore_newest(ckpt)
  assert step == 5 and data == {'next_index': 5}
  assert f'moved it aside to {tmp_path}/unrestorable-6-1 (kept' in warnings[0]
  ckpt.close()


def test_restore_newest_with_every_step_unreadable_returns_none(tmp_path):
  ckpt = save_steps(tmp_path, [1, 2])
  for step in (1, 2):
    delete_arrays(tmp_path / str(step))
  state, step, data, warnings = restore_newest(ckpt)
  assert (state, step, len(warnings)) == (None, None, 2)
  assert ckpt.latest_step() is None
  assert sorted(os.listdir(tmp_path)) == ['unrestorable-1', 'unrestorable-2']
  ckpt.close()


# What tensorstore raised writing a step's array to a full 2 MiB tmpfs (measured as root), minus the paths.
TENSORSTORE_FULL = ('RESOURCE_EXHAUSTED: Error writing "w/0" in OCDBT database at local file "/d/2.orbax-checkpoint-'
                    'tmp/state.orbax-checkpoint-tmp/ocdbt.process_0/": Failed writing: "/d/d/947b": Failed to write '
                    "288494 bytes to file 4: No space left on device [os_error_code='28']")


def test_out_of_space_is_found_in_the_errors_orbax_and_tensorstore_raise():
  full = OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), 'metrics.jsonl')
  for e in (full, OSError(errno.EDQUOT, os.strerror(errno.EDQUOT)), ValueError(TENSORSTORE_FULL)):
    assert checkpoint.out_of_space(e) is e
  try:
    try:
      raise full
    except OSError as cause:
      raise RuntimeError('orbax: save failed') from cause
  except RuntimeError as wrapped:
    assert checkpoint.out_of_space(wrapped) is full
  for e in (OSError(errno.EACCES, os.strerror(errno.EACCES)), ValueError('DATA_LOSS: Error decoding local file')):
    assert checkpoint.out_of_space(e) is None


def write_to_dev_full(monkeypatch, step, what):
  """Sends `step`'s write of `what` to /dev/full, where the kernel fails every write with ENOSPC: 'data', grain's
  iterator file (written while `save` blocks), or 'metadata', the state's _METADATA (written in orbax's background
  thread, after the arrays)."""
  in_step = f'/{step}.orbax-checkpoint-tmp/'
  if what == 'data':
    real_save = grain.checkpoint.CheckpointHandler.save

    def save(self, directory, *args, **kwargs):
      if in_step in str(directory):
        os.symlink('/dev/full', directory / f'process_{jax.process_index()}-of-{jax.process_count()}.json')
      return real_save(self, directory, *args, **kwargs)
    monkeypatch.setattr(grain.checkpoint.CheckpointHandler, 'save', save)
  else:
    real_write_text = async_path.write_text  # Which unlinks its path first: never hand it /dev/full.

    async def write_text(path, text):
      if not (in_step in str(path) and path.name == '_METADATA'):
        return await real_write_text(path, text)
      with open('/dev/full', 'w') as f:
        return f.write(text)
    monkeypatch.setattr(async_path, 'write_text', write_text)


@pytest.mark.parametrize('what', ['data', 'metadata'])
def test_a_write_to_a_full_device_fails_the_save_naming_the_step_and_the_one_kept(tmp_path, monkeypatch, what):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=1)
  ckpt.save(1, {'w': jnp.ones(4)}, make_iterator())
  write_to_dev_full(monkeypatch, 2, what)
  with pytest.raises(errors.DiskFullError) as error:
    ckpt.save(2, {'w': jnp.ones(4)}, make_iterator())  # 'data' fails here, 'metadata' in the background...
    ckpt.wait()  # ...raised here.
  assert error.match(rf'no space left on the disk of {tmp_path}: writing checkpoint step 2 to {tmp_path}/2 failed '
                     r'\(OSError: \[Errno 28\] No space left on device\)\. The newest complete checkpoint, step 1, '
                     rf'is kept in {tmp_path}/1; free space')
  ckpt.close()
  assert sorted(os.listdir(tmp_path)) == ['1', '2.orbax-checkpoint-tmp']
