"""The scale pyramid: scaled images on grey canvases of a few static shapes.

For every scale s the image is resized to round(s*H) x round(s*W) with
bilinear align-corners interpolation (nnx `SpatialReSamplingEx`, no
anti-aliasing), framed by `border` = iSz/2 = 80 px of 0.5 grey on every side
(the reference pads exactly so), and then padded further, with the same grey,
to a canvas whose sides are multiples of `bucket_multiple`. Canvases are
[H, W, 3] float32 RGB in [0, 1] (NHWC once batched); normalisation happens on
the device.

Score-map geometry (derived from the Torch conv arithmetic and tested against
the patch form): on a canvas, dense position (r, c) is the 160-px object window
whose top-left corner is canvas pixel (16r, 16c), i.e. the window centred at
scaled-image pixel (16r, 16c) once the border is removed. The reference feeds
the unbucketed (h + 2*border)-px image, whose layer3 map has ceil((h +
2*border) / 16) cells and so ceil((h + 2*border) / 16) - fSz + 1 positions:
only these are valid here; the positions that exist only because of the
bucket padding are masked out.
"""

import dataclasses
import math
from typing import Sequence

import numpy as np

from deepmask_jax.models.layers import align_corners_matrix
from deepmask_jax.families.deepmask.patch_geometry import STRIDE

GREY = 0.5  # Value of the border, before normalisation.


@dataclasses.dataclass(frozen=True)
class Level:
  """One scale of one image.

  Attributes:
    scale: s, scaled-image pixels per original-image pixel (pasting uses it).
    size: (h, w) of the scaled image.
    canvas: (H, W) of the padded canvas the network sees.
    positions: (rows, cols) of valid score-map positions (see module doc).
  """
  scale: float
  size: tuple[int, int]
  canvas: tuple[int, int]
  positions: tuple[int, int]


def pyramid_scales(inference_cfg) -> tuple[float, ...]:
  """2^scale_min ... 2^scale_max (or 2^zoom_scale_max) in scale_step steps."""
  top = inference_cfg.zoom_scale_max if inference_cfg.zoom else (
      inference_cfg.scale_max)
  step = inference_cfg.scale_step
  count = int(round((top - inference_cfg.scale_min) / step)) + 1
  return tuple(2.0 ** (inference_cfg.scale_min + i * step)
               for i in range(count))


def round_up(value: int, multiple: int) -> int:
  return -(-value // multiple) * multiple


def plan_levels(height: int, width: int, scales: Sequence[float],
                border: int, feature_size: int, bucket_multiple: int,
                scale_factor: float = 1.0) -> list[Level]:
  """The pyramid levels of a height x width image.

  Args:
    height, width: size of the image that is resized (the working image).
    scales: pyramid scales relative to that image.
    border: grey frame in pixels (iSz / 2).
    feature_size: fSz, side of the layer3 window (iSz / 16).
    bucket_multiple: canvas sides are multiples of this (a multiple of 16).
    scale_factor: working-image pixels per original pixel (< 1 when a huge
      image was downscaled first); `Level.scale` is relative to the original.
  Returns:
    One Level per scale whose scaled image has at least one pixel.
  """
  if bucket_multiple % STRIDE:
    raise ValueError(f'bucket_multiple must be a multiple of {STRIDE}, '
                     f'got {bucket_multiple}')
  levels = []
  for scale in scales:
    size = (int(round(scale * height)), int(round(scale * width)))
    if min(size) < 1:
      continue
    positions = tuple(-(-(side + 2 * border) // STRIDE) - feature_size + 1
                      for side in size)
    # A multiple of 16 that holds the framed image also holds a full window
    # at every valid position (STRIDE * (positions - 1 + fSz) pixels).
    canvas = tuple(round_up(side + 2 * border, bucket_multiple)
                   for side in size)
    levels.append(Level(scale * scale_factor, size, canvas, positions))
  return levels


def _align_corners_taps(size_in: int, size_out: int):
  """(low, high, frac) per output index, from the model's own weights."""
  weights = align_corners_matrix(size_in, size_out)
  low = np.argmax(weights > 0, axis=1)
  high = np.minimum(low + 1, size_in - 1)
  frac = 1.0 - weights[np.arange(size_out), low]
  return low, high, frac.astype(np.float32)


def resize_bilinear(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
  """Align-corners bilinear resize of [H, W, C] float32 to [h, w, C]."""
  low, high, frac = _align_corners_taps(image.shape[0], size[0])
  frac = frac[:, None, None]
  rows = image[low] * (1.0 - frac) + image[high] * frac
  low, high, frac = _align_corners_taps(image.shape[1], size[1])
  frac = frac[None, :, None]
  return rows[:, low] * (1.0 - frac) + rows[:, high] * frac


def build_canvas(image: np.ndarray, level: Level, border: int) -> np.ndarray:
  """The level's canvas [H, W, 3] float32: the scaled image at (border, border)."""
  canvas = np.full(level.canvas + (3,), GREY, np.float32)
  h, w = level.size
  canvas[border:border + h, border:border + w] = resize_bilinear(
      image, level.size)
  return canvas


def window_origins(level: Level, rows: np.ndarray, cols: np.ndarray,
                   border: int):
  """Top-left corners in original-image pixels of the windows at (rows, cols).

  The reference pastes mask pixel (i, j) of a window at
  floor((16 r - border) / s) + i (InferSharpMask getTopMasks, 0-based r).
  """
  scale = level.scale
  origin_rows = np.floor((STRIDE * np.asarray(rows, np.float64) - border)
                         / scale)
  origin_cols = np.floor((STRIDE * np.asarray(cols, np.float64) - border)
                         / scale)
  return origin_rows.astype(np.int32), origin_cols.astype(np.int32)


def pasted_size(level: Level, object_window: int) -> int:
  """Side of a window's mask in original pixels: floor(iSz / s)."""
  return int(math.floor(object_window / level.scale))
