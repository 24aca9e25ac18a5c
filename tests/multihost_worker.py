"""One process of the multi-host test: `python multihost_worker.py PORT PROCESS_ID WORKDIR`.

Two of these, each with 4 fake CPU devices, form one 8-device mesh through `jax.distributed` on localhost,
train 5 steps on fixed batches (each process feeds its half of every global batch), print the losses as
JSON and save a checkpoint from both processes.
"""
import json
import os
import sys

os.environ['XLA_FLAGS'] = (os.environ.get('XLA_FLAGS', '') + ' --xla_force_host_platform_device_count=4').strip()
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import grain  # noqa: E402
import jax  # noqa: E402

from lm import checkpoint  # noqa: E402
from lm import parallel  # noqa: E402


def main(port: str, process_id: str, workdir: str) -> None:
  parallel.initialize_distributed(f'localhost:{port}', 2, int(process_id), timeout_s=60)
  import test_parallel  # noqa: PLC0415  (after jax.distributed: it builds nothing at import)
  assert jax.device_count() == 8 and jax.local_device_count() == 4
  launcher = test_parallel.make_launcher('mesh', (8, 1, 1))
  state = launcher.init(jax.random.PRNGKey(0))
  half = test_parallel.BATCH // 2
  rows = slice(jax.process_index() * half, (jax.process_index() + 1) * half)
  losses = []
  for batch in test_parallel.batches(5):
    state, metrics = launcher.step(state, {k: v[rows] for k, v in batch.items()})
    losses.append(float(metrics['loss']))
  ckpt = checkpoint.Checkpointer(workdir, keep=1)
  ckpt.save(5, launcher.to_checkpoint(state), iter(grain.MapDataset.range(4).to_iter_dataset()))
  ckpt.wait()
  ckpt.close()
  print('LOSSES ' + json.dumps(losses), flush=True)


if __name__ == '__main__':
  main(*sys.argv[1:])
