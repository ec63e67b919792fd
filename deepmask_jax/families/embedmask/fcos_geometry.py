"""FCOS geometry shared by EmbedMask's model, targets and inference.

Feature levels P3..P7 have strides 8..128. Canvases (padded input images) are
multiples of SIZE_DIVISIBILITY = 32 pixels per side, so P3..P5 are exactly
H/8, H/16, H/32; P6 and P7 come from 3x3 stride-2 convs with padding 1 on the
level below, so each is ceil(previous / 2).

Locations are flattened level-major, row-major within a level: every
per-location array of the model, the targets and inference is [..., L, ...]
with L = sum_l H_l * W_l, in this order. Location (i, j) of a level with
stride s sits at image pixel (x, y) = (j * s + s // 2, i * s + s // 2), as in
the reference's compute_locations.

Boxes are [x0, y0, x1, y1] in input pixels. Areas and IoUs follow
maskrcnn-benchmark's +1 pixel convention: area = (x1 - x0 + 1) * (y1 - y0 + 1).
"""

import math
from typing import Sequence

import jax.numpy as jnp
import numpy as np

STRIDES = (8, 16, 32, 64, 128)
SIZE_DIVISIBILITY = 32


def level_shapes(height: int, width: int,
                 strides: Sequence[int] = STRIDES) -> list[tuple[int, int]]:
  """(H_l, W_l) of each level for a canvas of height x width pixels."""
  if height % SIZE_DIVISIBILITY or width % SIZE_DIVISIBILITY:
    raise ValueError(f'canvas {height}x{width} is not a multiple of '
                     f'{SIZE_DIVISIBILITY} pixels per side')
  shapes = []
  for stride in strides:
    if stride <= SIZE_DIVISIBILITY:
      shapes.append((height // stride, width // stride))
    else:  # A stride-2 conv (pad 1) on the level below.
      below_h, below_w = shapes[-1]
      shapes.append((math.ceil(below_h / 2), math.ceil(below_w / 2)))
  return shapes


def locations(height: int, width: int, strides: Sequence[int] = STRIDES):
  """Pixel positions of every location of a canvas, level-major.

  Returns:
    (xy, stride, level): float32 [L, 2] (x, y) pixel positions, float32 [L]
    the stride of each location's level, int32 [L] the level index (0 = P3).
  """
  xy, stride_of, level_of = [], [], []
  for level, (stride, (h, w)) in enumerate(
      zip(strides, level_shapes(height, width, strides))):
    ys, xs = np.meshgrid(np.arange(h), np.arange(w), indexing='ij')
    xy.append(np.stack([xs.ravel() * stride + stride // 2,
                        ys.ravel() * stride + stride // 2], axis=-1))
    stride_of.append(np.full(h * w, stride))
    level_of.append(np.full(h * w, level))
  return (np.concatenate(xy).astype(np.float32),
          np.concatenate(stride_of).astype(np.float32),
          np.concatenate(level_of).astype(np.int32))


def box_area(boxes):
  """[..., 4] xyxy -> [...] areas, +1 pixel convention (0 for empty boxes)."""
  width = jnp.maximum(boxes[..., 2] - boxes[..., 0] + 1, 0)
  height = jnp.maximum(boxes[..., 3] - boxes[..., 1] + 1, 0)
  return width * height


def box_iou(a, b):
  """[..., N, 4] x [..., M, 4] xyxy -> [..., N, M] IoU, +1 pixel convention."""
  top_left = jnp.maximum(a[..., :, None, :2], b[..., None, :, :2])
  bottom_right = jnp.minimum(a[..., :, None, 2:], b[..., None, :, 2:])
  size = jnp.maximum(bottom_right - top_left + 1, 0)
  inter = size[..., 0] * size[..., 1]
  union = box_area(a)[..., :, None] + box_area(b)[..., None, :] - inter
  return inter / jnp.maximum(union, 1e-9)
