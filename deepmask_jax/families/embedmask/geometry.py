"""Full-image geometry of EmbedMask's input: resized sizes and the canvases.

No TensorFlow here: the tf.data pipeline (training) and the image API
(inference) share these rules, so a model sees the same sizes in both.

Images are resized as maskrcnn-benchmark's `Resize.get_size`: the shorter
side to `min_size` unless the longer one would then exceed `max_size`, in
which case the longer side goes to `max_size` (sizes truncated as it does).
Resized images are padded into one of two canvases, landscape (w >= h) or
portrait, each the smallest multiple of 32 pixels per side holding a
resized image of that orientation, so a model compiles at most twice per
batch size. The reference's rounding can overshoot max_size by up to half the
aspect ratio in pixels (48 x 1346 for a 50 x 1403 image); such a side is
clamped to the canvas (a change of a few tenths of a percent, for aspect
ratios beyond about 20:1 at 800/1333). `fitted_size` applies it.
"""

from deepmask_jax.families.embedmask.fcos_geometry import SIZE_DIVISIBILITY


def resized_size(height: int, width: int, min_size: int,
                 max_size: int) -> tuple[int, int]:
  """(h, w) of an image of height x width after resizing."""
  size = float(min_size)
  short, long = float(min(height, width)), float(max(height, width))
  if max_size and long / short * size > max_size:
    size = float(int(round(max_size * short / long)))
  if (width <= height and width == size) or (height <= width
                                             and height == size):
    return int(height), int(width)
  if width < height:
    return int(size * height / width), int(size)
  return int(size), int(size * width / height)


def _round_up(value: int) -> int:
  return -(-int(value) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY


def canvas_sides(min_size: int, max_size: int) -> tuple[int, int]:
  """(short, long) canvas sides: landscape is (short, long), portrait
  (long, short)."""
  return _round_up(min(min_size, max_size)), _round_up(max_size)


def canvas_shapes(detection_config) -> dict:
  """{'landscape': (H, W), 'portrait': (H, W)} of a config.detection."""
  short, long = canvas_sides(detection_config.min_size,
                             detection_config.max_size)
  return {'landscape': (short, long), 'portrait': (long, short)}


def fitted_size(height: int, width: int, detection_config) -> tuple[int, int]:
  """resized_size clamped to its canvas (and to at least 1 pixel)."""
  resized = resized_size(height, width, detection_config.min_size,
                         detection_config.max_size)
  canvas = canvas_shapes(detection_config)[orientation(height, width)]
  return tuple(max(1, min(r, c)) for r, c in zip(resized, canvas))


def orientation(height: int, width: int) -> str:
  """'landscape' (w >= h, squares too) or 'portrait'."""
  return 'landscape' if width >= height else 'portrait'
