"""The object index of a split: every annotation's box, label and image, in numpy.

Built once per split from the TFDS records (data/records.py) and cached; the
families' samplers draw from it without TensorFlow.
"""

import dataclasses

import numpy as np


@dataclasses.dataclass(frozen=True)
class ObjectIndex:
  """Every annotation of a split, flattened in record order, plus image tables.

  Image i is record i of the split (its position in the TFDS data source); its
  objects are rows first_object[i]:first_object[i + 1] of the object arrays.

  Attributes (I images, N objects):
    image_id: int64 [I], COCO image ids.
    image_size: int32 [I, 2], (height, width) in pixels.
    first_object: int64 [I + 1], CSR offsets into the object arrays.
    object_slot: int32 [N], position in the record's `objects` sequence.
    label: int32 [N], contiguous category label 0..C-1.
    bbox: float32 [N, 4], COCO [x, y, w, h] in pixels.
    area: float32 [N], segment area in pixels.
    iscrowd: bool [N].
  """
  image_id: np.ndarray
  image_size: np.ndarray
  first_object: np.ndarray
  object_slot: np.ndarray
  label: np.ndarray
  bbox: np.ndarray
  area: np.ndarray
  iscrowd: np.ndarray

  @property
  def num_images(self) -> int:
    return len(self.image_id)

  @property
  def object_image(self) -> np.ndarray:
    """int64 [N]: the image index of each object."""
    return np.repeat(np.arange(self.num_images), np.diff(self.first_object))

  def mask_sources(self) -> np.ndarray:
    """bool [N]: objects DeepMask trains masks on (DataSampler:maskSampling).

    Crowds, segments under 100 px and boxes narrower or lower than 5 px are
    skipped.
    """
    w, h = self.bbox[:, 2], self.bbox[:, 3]
    return ~self.iscrowd & (self.area >= 100) & (w >= 5) & (h >= 5)
