"""`deepmask_jax.main` with a DeepMask input pipeline that fails at step N.

python -m tests.train.failing_pipeline_main FAIL_AT KIND [main's flags...]

KIND is where the error starts: 'tf_data' (a parallel tf.data map with a
numpy_function, as the real pipelines) or 'generator' (a Python generator).
The batches are in-memory (tests/train/fake_batches.py); the rest is main's
own path: flags, config, console, trainer.
"""

import sys

from deepmask_jax import main  # pylint: disable=g-bad-import-order  # First: quiets TF.
from deepmask_jax.families.deepmask.family import DeepMaskFamily
from tests.train import fake_batches

FAILURE = 'pipeline stage failed on purpose'


def generator_source(fail_at: int):
  def source(config, start_step=0):
    for step, batch in enumerate(fake_batches.patch_batches(config, start_step),
                                 start=start_step + 1):
      if step == fail_at:
        raise RuntimeError(f'{FAILURE} at step {step}')
      yield batch
  return source


def tf_data_source(fail_at: int):
  """The generator's batches through a parallel tf.data map that raises."""
  import numpy as np  # pylint: disable=g-import-not-at-top
  import tensorflow as tf  # pylint: disable=g-import-not-at-top

  def source(config, start_step=0):
    batches = fake_batches.patch_batches(config, start_step)
    first = next(batches)
    signature = {k: tf.TensorSpec(np.shape(v), tf.as_dtype(np.asarray(v).dtype))
                 for k, v in first.items()}
    def all_batches():
      yield first
      yield from batches

    def check(step):
      if int(step) == fail_at:
        raise ValueError(f'{FAILURE} at step {int(step)}')
      return step

    def stage(step, batch):
      step = tf.numpy_function(check, [step], tf.int64, stateful=False)
      return tf.identity(step), batch

    steps = tf.data.Dataset.counter(start_step + 1)
    data = tf.data.Dataset.zip(steps, tf.data.Dataset.from_generator(
        all_batches, output_signature=signature))
    data = data.map(stage, num_parallel_calls=4).map(lambda _, b: b).prefetch(4)
    return data.as_numpy_iterator()
  return source


if __name__ == '__main__':
  fail_at, kind = int(sys.argv[1]), sys.argv[2]
  del sys.argv[1:3]
  make = tf_data_source if kind == 'tf_data' else generator_source
  DeepMaskFamily.train_batches = lambda self, config, start_step=0: make(
      fail_at)(config, start_step)
  main.run_main()
