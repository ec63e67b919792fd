"""tf.data full-image batches for EmbedMask training (reference section 3).

Batch t is a pure function of (seed, t, process_index, dataset): its group
(canvas), images, flips and boxes are drawn statelessly in numpy by
detection_sampler.py, so a resumed run calls
`train_batches(config, start_step=t)` and gets exactly the batches an
uninterrupted run would have got. Global sample j of a step is sample
j - first of process p, first = p * local_batch: disjoint slices that together
form the global batch.

Per image, in parallel deterministic tf.data maps: fetch the record, decode
the JPEG, resize (bilinear, antialiased like PIL, rounded to 8 bits like
PIL's output), flip, order channels, normalise, zero-pad to the group's
canvas; then decode only the kept objects' PNG masks, one at a time, and read
each object's resized mask only at the pixels the targets need (it is never
materialised at input size):

- 'masks': the reference's prepare_masks. The resized mask zero-padded to the
  canvas (H, W), bilinearly resized (half-pixel) to (H/4, W/4), > 0. A factor
  of exactly 4 makes output (i, j) the mean of input pixels rows 4i+1..4i+2,
  columns 4j+1..4j+2, so it is their logical or.
- 'mask_points': the resized mask at every FCOS location's pixel
  (fcos_geometry.locations; level-major), zero outside the resized image.

The resized mask of an object is its full-image 0/1 mask resized to the
image's resized size with half-pixel bilinear interpolation (no antialias),
>= 0.5, and flipped with the image: sampling the object's shape at the
resized pixel centres, as the reference's rasterised resized polygons do.
"""

import numpy as np
import tensorflow as tf

from deepmask_jax.data import feed
from deepmask_jax.data import records
from deepmask_jax.data import tfds_coco
from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.families.embedmask import sampler as detection_sampler
from deepmask_jax.families.embedmask.geometry import DetectionGeometry

MASK_STRIDE = 4  # The pixel embedding's (and mask target's) stride.
_SPEC_TYPES = {
    'image_index': (tf.int64, ()), 'group': (tf.int32, ()),
    'flip': (tf.bool, ()), 'image_hw': (tf.int32, (2,)),
    'image_id': (tf.int64, ()), 'object_slot': (tf.int32, ('M',)),
    'boxes': (tf.float32, ('M', 4)), 'classes': (tf.int32, ('M',)),
    'valid': (tf.bool, ('M',)),
}


def _axis_taps(pixels: tf.Tensor, out_size: tf.Tensor, in_size: tf.Tensor,
               reverse: tf.Tensor):
  """Half-pixel bilinear taps, as tf.image.resize, for some output pixels.

  Args:
    pixels: int32 [K] output pixel positions along one axis.
    out_size: int32, the resized extent along this axis.
    in_size: int32, the original extent.
    reverse: bool, read the resized axis mirrored (a flip).

  Returns:
    (int32 [K] lower tap, int32 [K] upper tap, float32 [K] weight of the
    upper tap, bool [K] inside the resized extent).
  """
  inside = pixels < out_size
  pixels = tf.where(reverse, out_size - 1 - pixels, pixels)
  scale = tf.cast(in_size, tf.float32) / tf.cast(out_size, tf.float32)
  source = (tf.cast(pixels, tf.float32) + 0.5) * scale - 0.5
  floor = tf.floor(source)
  lower = tf.clip_by_value(tf.cast(floor, tf.int32), 0, in_size - 1)
  upper = tf.clip_by_value(tf.cast(floor, tf.int32) + 1, 0, in_size - 1)
  return lower, upper, source - floor, inside


def resized_mask_grid(mask: tf.Tensor, resized_hw: tf.Tensor, flip: tf.Tensor,
                      rows: tf.Tensor, cols: tf.Tensor) -> tf.Tensor:
  """An object's resized (and flipped) mask read on a grid of pixels.

  Args:
    mask: uint8 [H0, W0], 0/1 at the original size.
    resized_hw: int32 [2], the resized (h, w).
    flip: bool, whether the image is flipped.
    rows, cols: int32 [R], [C] pixel positions in the resized image (may lie
      outside it, e.g. in the canvas padding).

  Returns:
    bool [R, C]: resize(mask, resized_hw, bilinear) >= 0.5 at (rows, cols),
    False outside the resized image.
  """
  in_hw = tf.shape(mask)
  values = tf.cast(mask, tf.float32)
  top, bottom, row_weight, row_inside = _axis_taps(rows, resized_hw[0], in_hw[0],
                                                   tf.constant(False))
  left, right, col_weight, col_inside = _axis_taps(cols, resized_hw[1], in_hw[1],
                                                   flip)
  upper_rows = tf.gather(values, top)
  along_rows = upper_rows + (tf.gather(values, bottom) - upper_rows) * row_weight[:, None]
  left_cols = tf.gather(along_rows, left, axis=1)
  grid = left_cols + (tf.gather(along_rows, right, axis=1) - left_cols) * col_weight
  return (grid >= 0.5) & row_inside[:, None] & col_inside[None, :]


class CanvasTargets:
  """Pixel grids read from each object's resized mask for one canvas."""

  def __init__(self, canvas_hw, strides):
    self.canvas_hw = tuple(canvas_hw)
    height, width = self.canvas_hw
    # Rows 4i+1, 4i+2 (and columns alike) feed stride-4 output (i, j).
    self.target_rows = _inner_pair(height // MASK_STRIDE)
    self.target_cols = _inner_pair(width // MASK_STRIDE)
    xy, _, level = fcos_geometry.locations(height, width, strides)
    # Locations are row-major per level: a level is the grid of its distinct
    # rows and columns.
    self.level_grids = []
    for level_index in range(len(strides)):
      points = xy[level == level_index].astype(np.int32)
      rows, cols = np.unique(points[:, 1]), np.unique(points[:, 0])
      assert len(rows) * len(cols) == len(points)
      self.level_grids.append((rows, cols))
    self.num_locations = len(xy)

  def object_targets(self, mask, resized_hw, flip):
    """(uint8 [H/4, W/4] mask target, bool [L] mask at the locations)."""
    height, width = self.canvas_hw
    pairs = resized_mask_grid(mask, resized_hw, flip, self.target_rows,
                              self.target_cols)
    pairs = tf.reshape(pairs, (height // MASK_STRIDE, 2, width // MASK_STRIDE, 2))
    target = tf.cast(tf.reduce_any(pairs, axis=(1, 3)), tf.uint8)
    points = [tf.reshape(resized_mask_grid(mask, resized_hw, flip, rows, cols), [-1])
              for rows, cols in self.level_grids]
    return target, tf.concat(points, axis=0)


def _inner_pair(count: int) -> np.ndarray:
  return (MASK_STRIDE * np.arange(count)[:, None] + np.array([1, 2])).reshape(-1).astype(
      np.int32)


def _normalised_image(jpeg, resized_hw, flip, detection_config):
  """JPEG -> float32 [h, w, 3] resized, flipped, channel-ordered, normalised."""
  image = tf.io.decode_jpeg(jpeg, channels=3)
  image = tf.image.resize(image, resized_hw, method='bilinear', antialias=True)
  image = tf.clip_by_value(tf.round(image), 0.0, 255.0)
  image = tf.cond(flip, lambda: tf.reverse(image, axis=[1]), lambda: image)
  if detection_config.bgr:
    image = tf.reverse(image, axis=[-1])
  mean = tf.constant(detection_config.pixel_mean, tf.float32)
  std = tf.constant(detection_config.pixel_std, tf.float32)
  return (image - mean) / std


def _image_fn(reader, images, config):
  """Per-image spec -> one sample of the batch dict (TF graph)."""
  cap = int(config.detection.max_instances)
  canvases = [CanvasTargets(hw, tuple(config.embedmask.strides))
              for hw in DetectionGeometry.from_config(
                  config.detection).canvas_shapes()]
  image_ids = tf.constant(images.index.image_id)

  def on_canvas(targets, example, spec, image):
    height, width = targets.canvas_hw
    hw = spec['image_hw']
    padded = tf.pad(image, [[0, height - hw[0]], [0, width - hw[1]], [0, 0]])
    count = tf.reduce_sum(tf.cast(spec['valid'], tf.int32))
    pngs = tf.gather(example['objects']['mask'], spec['object_slot'][:count])

    def one_object(png):
      mask = tf.io.decode_png(png, channels=1)[..., 0]
      return targets.object_targets(mask, hw, spec['flip'])

    masks, points = tf.map_fn(
        one_object, pngs, fn_output_signature=(
            tf.TensorSpec((height // MASK_STRIDE, width // MASK_STRIDE), tf.uint8),
            tf.TensorSpec((targets.num_locations,), tf.bool)))
    pad = cap - count
    return (tf.ensure_shape(padded, (height, width, 3)),
            tf.pad(masks, [[0, pad], [0, 0], [0, 0]]),
            tf.pad(points, [[0, pad], [0, 0]]))

  def make_sample(spec):
    example = reader.read(spec['image_index'])
    # The index and the data source must agree on the record order.
    tf.debugging.assert_equal(example['image/id'],
                              tf.gather(image_ids, spec['image_index']))
    image = _normalised_image(example['image'], spec['image_hw'], spec['flip'],
                              config.detection)
    branches = [lambda t=targets: on_canvas(t, example, spec, image)
                for targets in canvases]
    image, masks, points = tf.switch_case(spec['group'], branches)
    return {'image': image, 'image_hw': spec['image_hw'],
            'image_id': spec['image_id'], 'boxes': spec['boxes'],
            'classes': spec['classes'], 'valid': spec['valid'],
            'masks': masks, 'mask_points': points}
  return make_sample


def _spec_dataset(steps, sampler, first_sample, local_batch, cap):
  """Per-image spec dicts, `local_batch` per step, in step order."""
  keys = list(_SPEC_TYPES)

  def specs(step):
    values = sampler.step_specs(int(step), first_sample, local_batch)
    return tuple(values[key] for key in keys)

  def step_specs(step):
    arrays = tf.numpy_function(specs, [step], [_SPEC_TYPES[k][0] for k in keys],
                               stateful=False)
    return {key: tf.ensure_shape(array, (local_batch,) + tuple(
        cap if d == 'M' else d for d in _SPEC_TYPES[key][1]))
            for key, array in zip(keys, arrays)}

  return steps.map(step_specs).unbatch()


def training_images(config, builder, split: str):
  """The split's TrainingImages; prints what it leaves out, fails if nothing."""
  images = detection_sampler.TrainingImages(
      records.load_object_index(builder, split),
      DetectionGeometry.from_config(config.detection))
  detection_sampler.ensure_trainable(images, config.data.name, split)
  for line in images.report(config.data.name, split):
    print(f'warning: {line}', flush=True)
  return images


def detection_dataset(config, builder, split: str, steps: tf.data.Dataset, *,
                      process_index=None, process_count=None) -> tf.data.Dataset:
  """Batches of full images for the given steps (a dataset of int64 steps).

  Returns:
    A dataset of dicts, b = the local batch, (H, W) one of
    DetectionGeometry.canvas_shapes,
    M = config.detection.max_instances, L = the canvas's FCOS locations:
      'image': float32 [b, H, W, 3] normalised NHWC, zero padded;
      'image_hw': int32 [b, 2] resized (h, w) before padding;
      'image_id': int64 [b];
      'boxes': float32 [b, M, 4] xyxy in resized pixels (+1 convention);
      'classes': int32 [b, M] contiguous labels 0..C-1;
      'valid': bool [b, M] real ground truth (first, in record order);
      'masks': uint8 [b, M, H/4, W/4] 0/1 stride-4 mask targets;
      'mask_points': bool [b, M, L] the mask at each location's pixel.
  """
  first_sample, local_batch = records.process_slice(
      config.batch_size, process_index, process_count)
  images = training_images(config, builder, split)
  sampler = detection_sampler.DetectionSampler(images, config.seed,
                                               config.batch_size)
  reader = records.RecordReader(builder, split)
  samples = _spec_dataset(steps, sampler, first_sample, local_batch,
                          int(config.detection.max_instances)).map(
      _image_fn(reader, images, config),
      num_parallel_calls=config.data.num_parallel_calls, deterministic=True)
  options = tf.data.Options()
  options.deterministic = True
  return (samples.batch(local_batch, drop_remainder=True)
          .prefetch(config.data.prefetch).with_options(options))


def train_batches(config, *, start_step: int = 0, split: str = 'train',
                  process_index=None, process_count=None) -> feed.Batches:
  """Training batches for steps start_step, start_step + 1, ... (endless).

  The local batch is config.batch_size // process_count (processes default
  to jax's); see `detection_dataset` for the keys. Fails before the first step
  (DataError) if the split has no image to train on; an error of a pipeline
  stage comes out of `next` as a feed.PipelineError naming the step.
  """
  builder = tfds_coco.prepare(config.data)
  steps = tf.data.Dataset.counter(start_step)
  batches = detection_dataset(config, builder, split, steps,
                              process_index=process_index,
                              process_count=process_count).as_numpy_iterator()
  return feed.Batches(batches, f"training batches of dataset "
                      f"'{config.data.name}' ({split})", first=start_step + 1)
