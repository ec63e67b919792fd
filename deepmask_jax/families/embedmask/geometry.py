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
ratios beyond about 20:1 at 800/1333). `DetectionGeometry.fitted_size`
applies it.
"""

import dataclasses

from deepmask_jax.families.embedmask.fcos_geometry import SIZE_DIVISIBILITY

LANDSCAPE, PORTRAIT = 0, 1  # Canvas groups: w >= h (squares too), w < h.


def _round_up(value: int) -> int:
  return -(-int(value) // SIZE_DIVISIBILITY) * SIZE_DIVISIBILITY


def orientation(height: int, width: int) -> int:
  """LANDSCAPE (w >= h, squares too) or PORTRAIT."""
  return LANDSCAPE if width >= height else PORTRAIT


@dataclasses.dataclass(frozen=True)
class DetectionGeometry:
  """Input sizes, canvases and ground-truth cap (config.detection)."""
  min_size: int = 800
  max_size: int = 1333
  max_instances: int = 100
  flip: bool = True

  @classmethod
  def from_config(cls, detection_config) -> 'DetectionGeometry':
    return cls(min_size=int(detection_config.min_size),
               max_size=int(detection_config.max_size),
               max_instances=int(detection_config.max_instances),
               flip=bool(detection_config.flip))

  def resized_size(self, height: int, width: int) -> tuple[int, int]:
    """(h, w) after resizing: maskrcnn-benchmark's Resize.get_size.

    Same float operations and rounding (Python round, then int truncation of
    the longer side), so sizes match the reference to the pixel.
    """
    size = float(self.min_size)
    short, long = float(min(height, width)), float(max(height, width))
    if self.max_size and long / short * size > self.max_size:
      size = float(int(round(self.max_size * short / long)))
    if (width <= height and width == size) or (height <= width
                                               and height == size):
      return int(height), int(width)
    if width < height:
      return int(size * height / width), int(size)
    return int(size), int(size * width / height)

  def canvas_shapes(self) -> list[tuple[int, int]]:
    """(H, W) per group [LANDSCAPE, PORTRAIT]: the smallest multiples of 32
    holding any resized image of that orientation.

    A landscape image's shorter side is at most min(min_size, max_size) and
    its longer side at most max_size (up to the reference's rounding, see
    `fitted_size`).
    """
    short = _round_up(min(self.min_size, self.max_size))
    long = _round_up(self.max_size)
    return [(short, long), (long, short)]

  def canvas_of(self, height: int, width: int) -> tuple[int, int]:
    """(H, W) of the canvas an image of height x width is padded into."""
    return self.canvas_shapes()[orientation(height, width)]

  def fitted_size(self, height: int, width: int) -> tuple[int, int]:
    """resized_size clamped to its canvas (and to at least 1 pixel)."""
    resized = self.resized_size(height, width)
    canvas = self.canvas_of(height, width)
    return tuple(max(1, min(r, c)) for r, c in zip(resized, canvas))
