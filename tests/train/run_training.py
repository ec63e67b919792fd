"""A training run on in-memory batches, as a subprocess the tests can kill.

python -m tests.train.run_training WORKDIR STEPS [NAN_AT_STEP]
"""

import functools
import os
import sys

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=2')

from deepmask_jax.families import bind  # pylint: disable=wrong-import-position
from deepmask_jax.train.trainer import train_and_evaluate  # pylint: disable=wrong-import-position
from tests.conftest import tiny_config  # pylint: disable=wrong-import-position
from tests.train import fake_batches  # pylint: disable=wrong-import-position


def resume_config(steps: int):
  """Tiny model, checkpoint every 2 steps, validation every 4."""
  return tiny_config(**{
      'patch.object_window': 64, 'patch.label_size': 32, 'batch_size': 4,
      'schedule.total_steps': steps, 'checkpoint_every_steps': 2,
      'eval_every_steps': 4, 'log_every_steps': 1, 'validation_images': 4,
      'keep_checkpoints': 2})


def poisoned_batches(nan_at: int):
  """The fake stream with a NaN image in the batch of step `nan_at` (1-based)."""
  def source(config, start_step=0):
    for step, batch in enumerate(fake_batches.patch_batches(config, start_step),
                                 start=start_step + 1):
      if step == nan_at:
        batch = dict(batch, image=batch['image'] * float('nan'))
      yield batch
  return source


def main(workdir: str, steps: int, nan_at: int = 0) -> None:
  config = resume_config(steps)
  sources = fake_batches.sources(config)
  if nan_at:
    sources['train_source'] = functools.partial(poisoned_batches(nan_at),
                                                config)
  train_and_evaluate(bind(config), workdir, **sources)


if __name__ == '__main__':
  main(sys.argv[1], int(sys.argv[2]), *map(int, sys.argv[3:]))
