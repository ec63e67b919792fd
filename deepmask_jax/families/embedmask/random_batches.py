"""Random in-memory full-image batches in the detection pipeline's layout.

No TensorFlow: benchmarks (also on machines without it) and tests feed these
to the EmbedMask train step instead of families/embedmask/pipeline.py.

Batch t is a pure function of (config.seed, t): random rectangles as objects,
their boxes, stride-4 masks and in-mask location bits consistent with each
other, so FCOS targets and the mask loss see real positives.
"""

import numpy as np

from deepmask_jax.families.embedmask import fcos_geometry


def detection_batch(config, step: int, canvas=None) -> dict:
  """One global batch on a canvas (H, W) (default: square, detection.min_size)."""
  height, width = canvas or (config.detection.min_size,) * 2
  side = min(height, width)  # Objects lie in the top-left square.
  count, classes = config.detection.max_instances, config.embedmask.num_classes
  xy, _, _ = fcos_geometry.locations(height, width, config.embedmask.strides)
  rng = np.random.default_rng([config.seed, step])
  n = config.batch_size
  batch = {'image': rng.normal(size=(n, height, width, 3)).astype(np.float32),
           'boxes': np.zeros((n, count, 4), np.float32),
           'classes': np.zeros((n, count), np.int32),
           'valid': np.zeros((n, count), bool),
           'masks': np.zeros((n, count, height // 4, width // 4), np.uint8),
           'mask_points': np.zeros((n, count, len(xy)), bool)}
  for i in range(n):
    for j in range(rng.integers(1, count + 1)):
      x0, y0 = rng.integers(0, side // 2, 2)
      x1, y1 = x0 + rng.integers(8, side // 2, 2)
      batch['boxes'][i, j] = (x0, y0, x1, y1)
      batch['classes'][i, j] = rng.integers(0, classes)
      batch['valid'][i, j] = True
      batch['masks'][i, j, y0 // 4:y1 // 4 + 1, x0 // 4:x1 // 4 + 1] = 1
      batch['mask_points'][i, j] = ((xy[:, 0] >= x0) & (xy[:, 0] <= x1)
                                    & (xy[:, 1] >= y0) & (xy[:, 1] <= y1))
  return batch


def detection_batches(config, start_step: int = 0):
  """Endless batches start_step, start_step + 1, ..."""
  step = start_step
  while True:
    yield detection_batch(config, step)
    step += 1
