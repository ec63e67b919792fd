"""A model's predictions drawn over a fixed handful of val images (TensorBoard).

At each validation the trainer writes these overlays beside the scalars, so
the masks can be seen improving over the steps. The images are the first
`config.tensorboard_images` validation images (json order) that have objects and
can be read; the overlays are `propose`'s (overlay.draw_encoded), at most
MAX_SIDE pixels on a side.
"""

import os
from typing import Callable

import jax
import numpy as np
from PIL import Image

from deepmask_jax.data.coco_json import load_instances
from deepmask_jax.data.coco_report import counted
from deepmask_jax.evaluation.categories import check_output_categories
from deepmask_jax.inference.images import read_image
from deepmask_jax.inference.overlay import draw_encoded

DRAWN = 10  # Results drawn per image.
MAX_SIDE = 640  # Larger overlays are scaled down (smaller event files).


def first_val_images(json_path: str, image_dir: str, count: int) -> dict:
  """{file stem: [H, W, 3] uint8} of the first `count` readable val images
  with objects, in json order (DataError for an unusable json)."""
  images, _, _ = load_instances(json_path, image_dir)
  chosen = {}
  for record in images:
    if len(chosen) == count:
      break
    if not record.objects:
      continue
    try:
      image = read_image(record.path)
    except (OSError, ValueError, Image.DecompressionBombError):
      continue  # Validation reports unreadable images; here one is skipped.
    chosen[os.path.splitext(os.path.basename(record.file_name))[0]] = image
  return chosen


def shrink(image: np.ndarray, max_side: int = MAX_SIDE) -> np.ndarray:
  """`image` scaled down to at most `max_side` pixels on a side."""
  height, width = image.shape[:2]
  factor = max_side / max(height, width)
  if factor >= 1:
    return image
  size = (max(1, round(width * factor)), max(1, round(height * factor)))
  return np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))


def host_copy(array) -> np.ndarray:
  """A replicated (or single-device) array on the host: this process's copy,
  so that it works when the array spans other processes' devices too."""
  if isinstance(array, jax.Array):
    return np.asarray(array.addressable_data(0))
  return np.asarray(array)


class PredictionImages:
  """variables -> {name: overlay [h, w, 3] uint8} on fixed images.

  The predictor is built on the first call and keeps its compiled programs;
  later calls only swap in the new variables.

  Args:
    make_predictor: variables -> an inference.predictor.Predictor, e.g.
      built by family.predictor.
    images: {name: [H, W, 3] uint8}.
  """

  def __init__(self, make_predictor: Callable, images: dict):
    self._make_predictor = make_predictor
    self.images = images
    self._predictor = None
    self._names = None

  def __call__(self, variables) -> dict:
    variables = jax.tree.map(host_copy, variables)
    if self._predictor is None:
      self._predictor = self._make_predictor(variables)
      self._names = {c['id']: c['name'] for c in
                     check_output_categories(self._predictor).categories}
    self._predictor.variables = jax.device_put(variables)
    drawn = {}
    for name, image in self.images.items():
      found = self._predictor.propose_encoded([image])[0]
      drawn[name] = shrink(draw_encoded(image, found, DRAWN, self._names))
    return drawn


def prediction_images(count: int, json_path: str, image_dir: str,
                      make_predictor: Callable):
  """PredictionImages on the first `count` images of a COCO split, or None
  (with one line saying why) when `count` is 0 or no image can be read."""
  if count <= 0:
    return None
  if not os.path.isfile(json_path):
    print(f'TensorBoard images: none, no val json at {json_path}', flush=True)
    return None
  images = first_val_images(json_path, image_dir, count)
  if not images:
    print(f'TensorBoard images: none, no readable val image with objects in '
          f'{json_path}', flush=True)
    return None
  if len(images) < count:
    print(f'TensorBoard images: {counted(len(images), "val image")} of the '
          f'{count} asked for', flush=True)
  return PredictionImages(make_predictor, images)
