"""Per-patch mask evaluation (the reference's evalPerPatch.lua).

Runs the patch model on jittered, flipped validation mask patches, thresholds
the logits at 0 and measures the IoU with the label at label resolution.
Reports the mean, the median and the share of patches with IoU >= 0.5 and
>= 0.7. Unlike the reference's IouMeter (which keeps the first n entries,
n = number of non-zero IoUs), every patch counts.
"""

from typing import Iterable

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import multihost_utils

from deepmask_jax.data import coco_images
from deepmask_jax.data.coco_report import LoadReport
from deepmask_jax.evaluation.ground_truth import GroundTruth, coverage
from deepmask_jax.xla_options import network_jit


def patch_ious(logits: jax.Array, labels: jax.Array) -> jax.Array:
  """IoU per patch of (logits > 0) against (labels > 0).

  Args:
    logits: [B, S, S] mask logits; labels: [B, S, S] in {-1, +1}.
  Returns [B] IoUs; a patch where both masks are empty scores 1.
  """
  pred, truth = logits > 0, labels > 0
  inter = jnp.sum(pred & truth, axis=(1, 2))
  union = jnp.sum(pred | truth, axis=(1, 2))
  return jnp.where(union > 0, inter / jnp.maximum(union, 1), 1.0)


def summarize(ious: np.ndarray) -> dict:
  """{'mean', 'median', 'iou_0.5', 'iou_0.7', 'patches'} of a vector of IoUs."""
  # Sorted, so the figures do not depend on the order processes gathered in.
  ious = np.sort(np.asarray(ious, np.float64))
  return {'mean': float(ious.mean()), 'median': float(np.median(ious)),
          'iou_0.5': float((ious >= 0.5).mean()),
          'iou_0.7': float((ious >= 0.7).mean()), 'patches': int(ious.size)}


class PerPatchEvaluator:
  """Evaluates a patch model on a fixed stream of validation mask batches.

  Args:
    model: a DeepMask or SharpMask module (patch form gives 'mask' logits at
      label resolution).
    shard: batch dict -> device arrays (e.g. DataParallel's sharding, global
      arrays over every process's devices), or None (this process's devices).

  With several processes, every process calls `run` with its own slice of
  each global batch (input_pipeline.eval_batches(process_index=...)); the IoUs
  of all processes are gathered, so every process returns the global figures.
  """

  def __init__(self, model, shard=None):
    self._shard = shard or (lambda batch: batch)

    @network_jit
    def ious(variables, images, labels):
      logits = model.apply(variables, images, train=False)['mask']
      return patch_ious(logits, labels)

    self._ious = ious

  def run(self, variables: dict, batches: Iterable[dict]) -> dict:
    """variables {'params', 'constants'}; this process's batches of 'image', 'mask'."""
    collected = []
    for batch in batches:
      arrays = self._shard({'image': batch['image'], 'mask': batch['mask']})
      collected.append(self._ious(variables, arrays['image'], arrays['mask']))
    if not collected:
      raise ValueError('per-patch evaluation got no batches')
    # A global array is gathered from every process; a process-local one is
    # concatenated with the other processes' slices of the same batch.
    ious = np.concatenate([multihost_utils.process_allgather(x, tiled=True)
                           for x in collected])
    return summarize(ious)


def split_coverage(ground_truth: GroundTruth, built_image_ids) -> dict:
  """What per-patch evaluation scored: the images of the TFDS split.

  The TFDS build left out the images it could not read (as per-image
  evaluation does); they are named here with the reason, found by reading
  only those files again. Images that read fine but are not in the split
  come from a build of an older json ('images_not_in_tfds').

  Args:
    ground_truth: the checked val json (ground_truth.load_ground_truth).
    built_image_ids: image ids of the TFDS val split (its ObjectIndex).
  """
  built = {int(i) for i in np.asarray(built_image_ids).reshape(-1)}
  left_out, not_built = LoadReport(), []
  for image in ground_truth.images:
    if image.id in built:
      continue
    found = LoadReport()
    if coco_images.read_image(image, found) is None:
      for reason, items in found.items.items():
        for item in items:
          left_out.add(reason, item)
    else:
      not_built.append(image.file_name)
  scored = [image.id for image in ground_truth.images if image.id in built]
  return coverage(ground_truth, scored, left_out, not_built)
