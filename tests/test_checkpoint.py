import os

import grain
import jax.numpy as jnp
import numpy as np
import pytest

from lm import checkpoint


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


def test_corrupt_checkpoint_is_a_clear_error_and_nothing_is_deleted(tmp_path):
  ckpt = checkpoint.Checkpointer(str(tmp_path), keep=2)
  ckpt.save(1, {'w': jnp.ones(4)}, make_iterator())
  ckpt.wait()
  for root, _, files in os.walk(tmp_path / '1' / 'state'):
    for name in files:
      with open(os.path.join(root, name), 'wb') as f:
        f.write(b'garbage')
  with pytest.raises(RuntimeError, match=r'(?s)cannot restore checkpoint step 1 from .*may be corrupt'):
    ckpt.restore(1, {'w': jnp.zeros(4)}, make_iterator())
  ckpt.close()
  assert os.path.isdir(tmp_path / '1'), 'a failed restore must never delete the checkpoint'
