"""FCOS target assignment of EmbedMask (reference_embedmask.md section 7).

One image at a time (vmap over the batch), static shapes throughout: every
(location, GT) pair is scored as an [L, M] array and the assignment is an
argmin, so padding rows, empty images and jit all work without branching.

A location l at pixel (x, y), of a level with stride s, is a positive of GT t
when all of these hold:
  * centre sampling: (x, y) lies strictly inside the GT centre +- radius * s,
    intersected with the GT box (every side distance > 0);
  * scale range: lo_l <= max(l, t, r, b) <= hi_l, both ends inclusive, with the
    distances measured to the full GT box (P3 [-1, 64], ..., P7 [512, inf));
  * SAMPLE_IN_MASK: the GT mask is 1 at pixel (int(y), int(x)) (precomputed by
    the input pipeline as `mask_points`);
  * the GT is a real row (`valid`), not padding.
Among the GTs left, the location takes the one with the smallest +1-convention
box area, the first index on ties (argmin). Unlike the reference, whether GT
0's centre x is 0 does not matter (docs/reference_fixes.md, EmbedMask item 8).
"""

from typing import Sequence

import jax.numpy as jnp
import numpy as np

from deepmask_jax.families.embedmask.fcos_geometry import box_area

# Upper bound of the last level's scale range (the reference's INF = 1e8).
_UNBOUNDED = np.inf


def level_scale_ranges(splits: Sequence[float]):
  """FPN_INTEREST_SPLIT (64, 128, 256, 512) -> float32 lo, hi [levels].

  P3 [-1, 64], P4 [64, 128], ..., P7 [512, inf): a size equal to a split
  belongs to both adjacent levels, as in the reference (inclusive bounds).
  """
  lo = np.array((-1.0,) + tuple(splits), np.float32)
  hi = np.array(tuple(splits) + (_UNBOUNDED,), np.float32)
  return lo, hi


def ltrb_distances(xy, boxes):
  """[L, 2] pixels x [M, 4] or [L, M, 4] xyxy -> [L, M, 4] ltrb distances."""
  x, y = xy[:, 0:1], xy[:, 1:2]
  return jnp.stack([x - boxes[..., 0], y - boxes[..., 1],
                    boxes[..., 2] - x, boxes[..., 3] - y], axis=-1)


def in_center_region(xy, stride, boxes, center_radius):
  """[L, M] bool: strictly inside GT centre +- radius * stride, within the box."""
  centre = (boxes[:, :2] + boxes[:, 2:]) / 2  # [M, 2]
  reach = (center_radius * stride)[:, None, None]  # [L, 1, 1]
  top_left = jnp.maximum(centre[None] - reach, boxes[None, :, :2])
  bottom_right = jnp.minimum(centre[None] + reach, boxes[None, :, 2:])
  region = jnp.concatenate([top_left, bottom_right], axis=-1)  # [L, M, 4]
  return ltrb_distances(xy, region).min(axis=-1) > 0


def centerness_target(ltrb):
  """[..., 4] ltrb -> sqrt(min(l,r)/max(l,r) * min(t,b)/max(t,b)).

  Only meaningful where all four distances are positive (positives); elsewhere
  the ratios are clipped to [0, 1] so the value stays finite.
  """
  left, top, right, bottom = (ltrb[..., i] for i in range(4))
  def ratio(a, b):
    return jnp.clip(jnp.minimum(a, b) / jnp.maximum(jnp.maximum(a, b), 1e-12),
                    0.0, 1.0)
  return jnp.sqrt(ratio(left, right) * ratio(top, bottom))


def fcos_targets(boxes, classes, valid, mask_points, xy, stride, level,
                 scale_ranges: Sequence[float] = (64, 128, 256, 512),
                 center_radius: float = 1.5, sample_in_mask: bool = True):
  """FCOS targets of one image.

  Args:
    boxes: [M, 4] GT boxes, xyxy input pixels (M >= 1; padding rows allowed).
    classes: [M] int32 class indices 0..C-1.
    valid: [M] bool, False for padding rows (they never match).
    mask_points: [M, L] bool, GT mask value at each location's pixel
      (int(y), int(x)); ignored (may be None) unless sample_in_mask.
    xy, stride, level: fcos_geometry.locations(H, W): [L, 2], [L], [L].
    scale_ranges: the splits between levels (config.embedmask.scale_ranges).
    center_radius: centre-sampling radius in strides (1.5).
    sample_in_mask: require positives to lie on the GT mask (static bool).
  Returns a dict of
    'labels': [L] int32, class + 1 for positives, 0 for background;
    'matched': [L] int32, the GT index of positives, -1 for negatives;
    'box_targets': [L, 4] float32 ltrb to the matched GT in stride units.
      Negatives keep the distances to GT 0, as the reference does; only the
      label marks them negative and no loss reads them;
    'centerness_targets': [L] float32, 0 for negatives.
  """
  boxes = jnp.asarray(boxes, jnp.float32)
  xy = jnp.asarray(xy, jnp.float32)
  stride = jnp.asarray(stride, jnp.float32)
  distances = ltrb_distances(xy, boxes)  # [L, M, 4] pixels.

  lo, hi = level_scale_ranges(scale_ranges)
  largest = distances.max(axis=-1)  # [L, M]
  in_scale = ((largest >= jnp.asarray(lo)[level][:, None])
              & (largest <= jnp.asarray(hi)[level][:, None]))
  candidate = (in_center_region(xy, stride, boxes, center_radius) & in_scale
               & jnp.asarray(valid, bool)[None, :])
  if sample_in_mask:
    candidate &= jnp.asarray(mask_points, bool).T

  area = jnp.where(candidate, box_area(boxes)[None, :], jnp.inf)  # [L, M]
  gt_index = jnp.argmin(area, axis=1)  # First index on ties; 0 if none.
  positive = jnp.isfinite(jnp.min(area, axis=1))

  ltrb = distances[jnp.arange(distances.shape[0]), gt_index]  # [L, 4]
  box_targets = ltrb / stride[:, None]
  labels = jnp.where(positive, jnp.asarray(classes, jnp.int32)[gt_index] + 1, 0)
  return {
      'labels': labels.astype(jnp.int32),
      'matched': jnp.where(positive, gt_index, -1).astype(jnp.int32),
      'box_targets': box_targets,
      'centerness_targets': jnp.where(positive,
                                      centerness_target(box_targets), 0.0),
  }
