"""Full-image geometry of EmbedMask's input: resized sizes and the canvases.

No TensorFlow here: the tf.data pipeline (training) and the image API
(inference) share these rules, so a model sees the same sizes in both.

Images are resized as maskrcnn-benchmark's `Resize.get_size`: the shorter
side to `min_size` unless the longer one would then exceed `max_size`, in
which case the longer side goes to `max_size` (sizes truncated as it does).
Resized images are padded into one of two canvases, landscape (w >= h) or
portrait, each the smallest multiple of 32 pixels per side that holds every
resized image of that orientation, so a model compiles at most twice per
batch size.
"""

from deepmask_jax.models.fcos_geometry import SIZE_DIVISIBILITY


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


def canvas_shapes(detection_config) -> dict:
  """{'landscape': (H, W), 'portrait': (H, W)} of a config.detection."""
  short = _round_up(detection_config.min_size)
  # +1: the truncating resize can leave the long side one pixel over.
  long = _round_up(max(detection_config.max_size, detection_config.min_size)
                   + 1)
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
