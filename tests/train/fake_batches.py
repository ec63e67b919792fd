"""Random in-memory batches with the input pipeline's layout, for train tests."""

import functools

import numpy as np

from deepmask_jax.families.deepmask.patch_geometry import patch_side
from deepmask_jax.train.validation_source import ValidationSource


def patch_batches(config, start_step: int = 0):
  """Yields batch t = f(seed, t): 'image', 'mask', 'score', 'is_mask'."""
  side = patch_side(config)
  label = config.patch.label_size
  step = start_step
  while True:
    rng = np.random.default_rng([config.seed, step])
    images = rng.normal(size=(config.batch_size, side, side, 3))
    yield {'image': images.astype(np.float32),
           'mask': np.sign(rng.normal(size=(config.batch_size, label, label))
                           ).astype(np.float32),
           'score': np.sign(rng.normal(size=config.batch_size)
                            ).astype(np.float32),
           'is_mask': np.bool_(rng.uniform() > config.patch.hfreq)}
    step += 1


def eval_batches(config):
  stream = patch_batches(config, start_step=10 ** 6)
  # Whole batches holding config.validation_images patches (rounded up).
  for _ in range(-(-config.validation_images // config.batch_size)):
    yield next(stream)


def sources(config) -> dict:
  """train_and_evaluate's train_source and eval_source: these batches (the
  validation images, for TensorBoard drawings, are config.data's)."""
  return {'train_source': functools.partial(patch_batches, config),
          'eval_source': ValidationSource.from_config(
              config, batches=lambda: eval_batches(config))}
