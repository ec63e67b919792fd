"""TF graph ops that turn a decoded image and a window into a training patch.

They run inside tf.data maps, outside the Python GIL. Windows are integer
(x0, y0, side) in image pixels (see sampler.py) and may extend past the image;
what lies outside reads as a fill value (0.5 grey for images, as the
reference's cropTensor pads; 0 for masks).

Resampling keeps the continuous pixel frame exact (output pixel i of a window
covers [x0 + i*side/size, x0 + (i+1)*side/size)): the image is first averaged
over k x k blocks on the window's grid, k = floor(side/size), then sampled
bilinearly at the output pixel centres. Torch's `image.scale` (the reference) area-averages
when shrinking, which the block mean does up to a residual factor below 2, and
aligns corners when enlarging, which stretches the patch by up to half an input
pixel at its borders; here enlarging is plain half-pixel bilinear, so image
and label stay aligned with the COCO geometry. The cost depends on the image
and output sizes, not on the window's: a 1500-px window around a 640-px image
is never materialised.
"""

import tensorflow as tf


def _block_mean(image: tf.Tensor, k: tf.Tensor, before: tf.Tensor,
                fill: float) -> tf.Tensor:
  """Means of k x k blocks of an image framed with `fill`.

  Args:
    image: [H, W, C] float.
    k: int32 block side.
    before: int32 [2], (rows, columns) of fill added above and to the left, so
      block edges fall where the caller needs them; the far sides are filled
      up to a multiple of k.
    fill: value of the added pixels.

  Returns:
    [ceil((H + before[0]) / k), ceil((W + before[1]) / k), C].
  """
  shape = tf.shape(image)
  height, width = shape[0] + before[0], shape[1] + before[1]
  rows, cols = -(-height // k), -(-width // k)
  padded = tf.pad(image, [[before[0], rows * k - height],
                          [before[1], cols * k - width], [0, 0]],
                  constant_values=fill)
  # Area resizing by exactly k is the block mean (and much faster than a
  # reshape and reduce_mean).
  return tf.image.resize(padded, tf.stack([rows, cols]), method='area')


def resample_window(image: tf.Tensor, window: tf.Tensor, size: int,
                    fill: float) -> tf.Tensor:
  """Resamples a square image window onto a size x size grid.

  Shrinking by an integer factor k with k * size == side gives exactly the
  area average of each output pixel's footprint.

  Args:
    image: [H, W, C], any real dtype.
    window: int32 [3], (x0, y0, side) in image px; may leave the image.
    size: output side.
    fill: value of everything outside the image.

  Returns:
    float32 [size, size, C].
  """
  pixels = tf.cast(image, tf.float32)
  origin, side = window[:2], window[2]
  k = tf.maximum(side // size, 1)
  # Block edges on the window's grid: x0 + j*k for integer j.
  before = tf.math.floormod(-origin[::-1], k)  # (rows, columns).
  pooled = tf.cond(k > 1, lambda: _block_mean(pixels, k, before, fill),
                   lambda: pixels)
  # A one-pixel frame of fill: samples between the edge and the outside
  # interpolate towards the fill, and every extent is at least 3.
  framed = tf.pad(pooled, [[1, 1], [1, 1], [0, 0]], constant_values=fill)
  extent = tf.cast(tf.shape(framed)[:2], tf.float32)
  offset = tf.cast(tf.where(k > 1, before, 0), tf.float32)
  k, side = tf.cast(k, tf.float32), tf.cast(side, tf.float32)
  step = side / size  # Image px per output px.

  def first_and_last(start, shift, length):
    """Normalised pixel-index coords of the first and last output centres."""
    start = tf.cast(start, tf.float32) + shift
    first = (start + step / 2) / k - 0.5 + 1
    last = (start + side - step / 2) / k - 0.5 + 1
    return first / (length - 1), last / (length - 1)

  x_first, x_last = first_and_last(window[0], offset[1], extent[1])
  y_first, y_last = first_and_last(window[1], offset[0], extent[0])
  box = tf.stack([y_first, x_first, y_last, x_last])[None]
  patch = tf.image.crop_and_resize(framed[None], box, [0], [size, size],
                                   method='bilinear', extrapolation_value=fill)
  return tf.ensure_shape(patch[0], (size, size, image.shape[-1]))


def patch_image(image: tf.Tensor, window: tf.Tensor, size: int) -> tf.Tensor:
  """uint8 [H, W, 3] image -> float32 [size, size, 3] patch in [0, 1]."""
  return resample_window(image, window, size, fill=127.5) / 255.0


def _read_region(height_width: tf.Tensor, window: tf.Tensor):
  """The image region a window's resampling reads, and the window inside it.

  That is the window plus a pixel all round (bilinear samples near its edge
  read one pixel beyond it), clipped to the image and at least one pixel.

  Returns:
    (start (y, x), size (h, w), the window (x0, y0, side) relative to start).
  """
  start_yx = window[1::-1] - 1
  end_yx = start_yx + window[2] + 2
  start_yx = tf.clip_by_value(start_yx, 0, height_width - 1)
  end_yx = tf.clip_by_value(end_yx, start_yx + 1, height_width)
  shifted = tf.concat([window[:2] - start_yx[::-1], window[2:]], axis=0)
  return start_yx, end_yx - start_yx, shifted


def decode_jpeg_window(jpeg: tf.Tensor, window: tf.Tensor):
  """Decodes only the part of a JPEG that a window's patch reads.

  Much cheaper than a full decode when the window is small.

  Args:
    jpeg: scalar string, JPEG bytes.
    window: int32 [3], (x0, y0, side) in image px.

  Returns:
    (uint8 [h, w, 3] region, int32 [3] the window in the region's coordinates).
  """
  start_yx, size_yx, shifted = _read_region(
      tf.io.extract_jpeg_shape(jpeg)[:2], window)
  region = tf.io.decode_and_crop_jpeg(jpeg, tf.concat([start_yx, size_yx], 0),
                                      channels=3)
  return region, shifted


def patch_label(mask: tf.Tensor, label_window: tf.Tensor,
                size: int) -> tf.Tensor:
  """Full-image 0/1 mask [H, W, 1] -> float32 [size, size] in {-1, +1}.

  The label covers `label_window` (the central object region of the input
  window), resampled as the image is and thresholded at > 0.5 (cropMask).
  """
  start_yx, size_yx, window = _read_region(tf.shape(mask)[:2], label_window)
  region = tf.slice(mask, tf.concat([start_yx, [0]], 0),
                    tf.concat([size_yx, [-1]], 0))
  inside = resample_window(region, window, size, fill=0.0)[..., 0] > 0.5
  return tf.where(inside, 1.0, -1.0)


def normalise(patch: tf.Tensor, mean, std) -> tf.Tensor:
  """(x - mean) / std per RGB channel of a [..., 3] float patch."""
  return (patch - tf.constant(mean, tf.float32)) / tf.constant(std, tf.float32)


def flip_horizontally(array: tf.Tensor, flip: tf.Tensor) -> tf.Tensor:
  """Mirrors a [H, W, ...] array left-right when `flip` (a bool scalar)."""
  return tf.cond(flip, lambda: tf.reverse(array, axis=[1]), lambda: array)
