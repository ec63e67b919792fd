"""Which images each EmbedMask training step uses, and their geometry (numpy).

The reference (maskrcnn-benchmark/FCOS) trains on whole images: shorter side
resized to MIN_SIZE, longer at most MAX_SIZE, a horizontal flip with p = 0.5,
batches grouped by aspect ratio. Here every step's images, flips, resized
sizes and ground-truth boxes are drawn in numpy from the cached ObjectIndex,
statelessly from (seed, step), so batch t needs no iterator state:

- Images are grouped by orientation (LANDSCAPE: width >= height, PORTRAIT).
  Each group has one fixed canvas (`canvas_shapes`), so training compiles
  once per group.
- Step t draws its group with probability proportional to the group's size
  (uniforms drawn in chunks of _CHUNK steps, so counting a group's earlier
  steps costs one draw per chunk). The n-th step of group g takes positions
  n*B .. n*B+B-1 of g's image stream, which is a fresh permutation of g per
  epoch: within a group, every image is seen once per group epoch.
- Sample j of a step (global position) is flipped iff U(seed, t)[j] < 0.5.

Ground truth follows maskrcnn-benchmark's targets: COCO [x, y, w, h] becomes
xyxy with the +1 pixel convention (x1 = x + w - 1), clipped to the image;
crowds and boxes left empty are not targets; boxes are scaled by the resize
ratios and flipped as x -> width - 1 - x. Nothing here imports TensorFlow.
"""


import numpy as np

from deepmask_jax.data.object_index import ObjectIndex
from deepmask_jax.errors import DataError
from deepmask_jax.families.embedmask.geometry import (LANDSCAPE, PORTRAIT,
                                                     DetectionGeometry)

GROUP_NAMES = ('landscape', 'portrait')
# Random streams (the first word after the seed), apart from sampler.py's.
GROUP_STREAM, ORDER_STREAM, FLIP_STREAM = 10, 11, 12
_CHUNK = 1024  # Steps whose group draws come from one generator.
_LISTED_IMAGES = 10  # Images named in a report line before "and N more".


def reference_boxes(bbox: np.ndarray, image_hw: np.ndarray):
  """COCO [x, y, w, h] -> maskrcnn-benchmark target boxes.

  Args:
    bbox: float [N, 4] COCO boxes in pixels.
    image_hw: [N, 2] (height, width) of each box's image.

  Returns:
    (float32 [N, 4] xyxy, x1 = x + w - 1, clipped to [0, width - 1] x
    [0, height - 1]; bool [N], True where the clipped box is not empty, i.e.
    x1 > x0 and y1 > y0, as BoxList.clip_to_image(remove_empty=True)).
  """
  x0, y0 = bbox[:, 0], bbox[:, 1]
  x1 = x0 + np.maximum(bbox[:, 2] - 1, 0)
  y1 = y0 + np.maximum(bbox[:, 3] - 1, 0)
  xmax = (image_hw[:, 1] - 1).astype(np.float32)
  ymax = (image_hw[:, 0] - 1).astype(np.float32)
  boxes = np.stack([np.clip(x0, 0, xmax), np.clip(y0, 0, ymax),
                    np.clip(x1, 0, xmax), np.clip(y1, 0, ymax)], axis=-1)
  nonempty = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
  return boxes.astype(np.float32), nonempty


class TrainingImages:
  """The images of a split that EmbedMask trains on, with their geometry.

  An object is a target unless it is a crowd or its clipped box is empty. An
  image is trained on iff it has a target; of more than max_instances
  targets, the largest (by segment area, ties to the first) are kept.

  Attributes:
    index: the split's ObjectIndex.
    boxes: float32 [N, 4] reference xyxy boxes at the original size.
    is_target: bool [N].
    resized_hw: int32 [I, 2] resized (height, width) of every image.
    group: int32 [I], LANDSCAPE or PORTRAIT.
    members: per group, int64 record indices of its trained images.
    too_large: int64 record indices whose reference size overflows the
      canvas (only for extreme aspect ratios); they are shrunk to fit.
  """

  def __init__(self, index: ObjectIndex, geometry: DetectionGeometry):
    self.index, self.geometry = index, geometry
    object_image = index.object_image
    self.boxes, nonempty = reference_boxes(index.bbox, index.image_size[object_image])
    self.is_target = ~index.iscrowd & nonempty
    self.target_count = np.bincount(object_image[self.is_target],
                                    minlength=index.num_images)
    sizes = [geometry.resized_size(int(h), int(w)) for h, w in index.image_size]
    resized = np.array(sizes, np.int32).reshape(-1, 2)
    self.group = np.where(index.image_size[:, 1] >= index.image_size[:, 0],
                          LANDSCAPE, PORTRAIT).astype(np.int32)
    canvas = np.array(geometry.canvas_shapes(), np.int32)[self.group]
    self.too_large = np.flatnonzero((resized > canvas).any(axis=1))
    self.resized_hw = np.minimum(resized, canvas)
    trained = self.target_count > 0
    self.members = [np.flatnonzero(trained & (self.group == g))
                    for g in range(len(GROUP_NAMES))]

  @property
  def num_trained(self) -> int:
    return sum(len(m) for m in self.members)

  def dropped_objects(self) -> np.ndarray:
    """int64 [I]: targets beyond max_instances, per image."""
    return np.maximum(self.target_count - self.geometry.max_instances, 0)

  def kept_objects(self, image_index: int) -> np.ndarray:
    """Object rows used as ground truth for an image, in record order."""
    start, stop = self.index.first_object[image_index:image_index + 2]
    rows = start + np.flatnonzero(self.is_target[start:stop])
    if len(rows) > self.geometry.max_instances:
      largest = np.argsort(-self.index.area[rows], kind='stable')
      rows = np.sort(rows[largest[:self.geometry.max_instances]])
    return rows

  def report(self, dataset: str, split: str) -> list[str]:
    """What the selection left out, one line per fact (none if nothing)."""
    where = f"dataset '{dataset}' ({split})"
    lines = []
    crowds = int(self.index.iscrowd.sum())
    empty = int((~self.is_target & ~self.index.iscrowd).sum())
    if crowds or empty:
      lines.append(f'{where}: {crowds} crowd objects and {empty} objects with an '
                   'empty box are not detection targets')
    untrained = self.index.num_images - self.num_trained
    if untrained:
      lines.append(f'{where}: {untrained} of {self.index.num_images} images have '
                   'no non-crowd object and are left out of training')
    dropped = self.dropped_objects()
    if dropped.any():
      lines.append(f'{where}: {int(dropped.sum())} objects dropped beyond '
                   f'max_instances={self.geometry.max_instances} (the smallest): '
                   + self._list_images(np.flatnonzero(dropped), dropped))
    if len(self.too_large):
      lines.append(f'{where}: {len(self.too_large)} images with an extreme aspect '
                   'ratio were shrunk to fit the canvas: '
                   + self._list_images(self.too_large))
    return lines

  def _list_images(self, image_indices, counts=None) -> str:
    shown = [f'image id {self.index.image_id[i]}'
             + ('' if counts is None else f' ({counts[i]})')
             for i in image_indices[:_LISTED_IMAGES]]
    more = len(image_indices) - len(shown)
    return ', '.join(shown) + (f' and {more} more' if more else '')


class DetectionSampler:
  """Step -> the specs of its images; a pure function of (seed, step)."""

  def __init__(self, images: TrainingImages, seed: int, global_batch: int):
    self.images, self.seed, self.global_batch = images, seed, global_batch
    sizes = np.array([len(m) for m in images.members], np.float64)
    self._cumulative = np.cumsum(sizes) / sizes.sum()
    self._group_counts = [np.zeros(len(sizes), np.int64)]  # Before each chunk.
    self._orders = {}

  def _chunk_groups(self, chunk: int) -> np.ndarray:
    uniforms = np.random.default_rng([self.seed, GROUP_STREAM, chunk]).random(_CHUNK)
    return np.minimum(np.searchsorted(self._cumulative, uniforms, side='right'),
                      len(self._cumulative) - 1)

  def group_and_turn(self, step: int) -> tuple[int, int]:
    """(group of the step, how many earlier steps drew that group)."""
    chunk, offset = divmod(step, _CHUNK)
    while len(self._group_counts) <= chunk:  # Counts are cached per chunk.
      done = len(self._group_counts) - 1
      counts = np.bincount(self._chunk_groups(done), minlength=len(self._cumulative))
      self._group_counts.append(self._group_counts[-1] + counts)
    groups = self._chunk_groups(chunk)
    group = int(groups[offset])
    return group, int(self._group_counts[chunk][group] + (groups[:offset] == group).sum())

  def _epoch_order(self, group: int, epoch: int) -> np.ndarray:
    """Record indices of a group in the order of one of its epochs."""
    key = (group, epoch)
    if key not in self._orders:
      if len(self._orders) >= 4:  # A step spans at most two epochs of a group.
        self._orders.clear()
      members = self.images.members[group]
      rng = np.random.default_rng([self.seed, ORDER_STREAM, group, epoch])
      self._orders[key] = members[rng.permutation(len(members))]
    return self._orders[key]

  def step_images(self, step: int, first_sample: int, local_batch: int):
    """(group, int64 [b] record indices, bool [b] flips) of a process's slice."""
    group, turn = self.group_and_turn(step)
    count = len(self.images.members[group])
    positions = turn * self.global_batch + first_sample + np.arange(local_batch)
    records = np.array([self._epoch_order(group, int(p // count))[p % count]
                        for p in positions], np.int64)
    flip_draws = np.random.default_rng([self.seed, FLIP_STREAM, step]).random(
        self.global_batch)[first_sample:first_sample + local_batch]
    flips = (flip_draws < 0.5) & self.images.geometry.flip
    return group, records, flips

  def step_specs(self, step: int, first_sample: int, local_batch: int) -> dict:
    """A process's slice of step `step`, as arrays (b = local_batch, M = cap).

    Returns:
      {'image_index': int64 [b], 'group': int32 [b], 'flip': bool [b],
      'image_hw': int32 [b, 2] resized (h, w), 'image_id': int64 [b],
      'object_slot': int32 [b, M] slots in the record (-1 padding),
      'boxes': float32 [b, M, 4] xyxy in resized pixels,
      'classes': int32 [b, M], 'valid': bool [b, M]}.
    """
    group, records, flips = self.step_images(step, first_sample, local_batch)
    cap = self.images.geometry.max_instances
    specs = {
        'image_index': records,
        'group': np.full(local_batch, group, np.int32),
        'flip': flips,
        'image_hw': self.images.resized_hw[records],
        'image_id': self.images.index.image_id[records],
        'object_slot': np.full((local_batch, cap), -1, np.int32),
        'boxes': np.zeros((local_batch, cap, 4), np.float32),
        'classes': np.zeros((local_batch, cap), np.int32),
        'valid': np.zeros((local_batch, cap), bool),
    }
    for j, (record, flip) in enumerate(zip(records, flips)):
      rows = self.images.kept_objects(record)
      count = len(rows)
      specs['object_slot'][j, :count] = self.images.index.object_slot[rows]
      specs['boxes'][j, :count] = self._resized_boxes(rows, record, flip)
      specs['classes'][j, :count] = self.images.index.label[rows]
      specs['valid'][j, :count] = True
    return specs

  def _resized_boxes(self, rows, record, flip) -> np.ndarray:
    """BoxList.resize (x by w'/w, y by h'/h), then the flip x -> w' - 1 - x."""
    height, width = self.images.index.image_size[record]
    new_h, new_w = self.images.resized_hw[record]
    boxes = self.images.boxes[rows] * np.array(
        [new_w / width, new_h / height] * 2, np.float32)
    if flip:
      boxes = np.stack([new_w - 1 - boxes[:, 2], boxes[:, 1],
                        new_w - 1 - boxes[:, 0], boxes[:, 3]], axis=-1)
    return boxes.astype(np.float32)


def ensure_trainable(images: TrainingImages, dataset: str, split: str) -> None:
  """Fails with one line if no image of the split can be trained on."""
  if images.num_trained == 0:
    raise DataError(
        f"dataset '{dataset}' ({split}): none of its {images.index.num_images} "
        'images has a non-crowd object with a non-empty box; nothing to train '
        'EmbedMask on')

