"""FCOS targets against hand-worked cases (reference_embedmask.md section 7)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.families.embedmask.targets import fcos_targets

STRIDES = (8, 16, 32, 64, 128)
jitted_targets = jax.jit(fcos_targets, static_argnames='sample_in_mask')


def assign(points, boxes, classes=None, valid=None, mask_points=None,
           sample_in_mask=False):
  """Targets for hand-placed locations: points [(x, y, level)], boxes [M, 4]."""
  points = np.asarray(points, np.float32)
  level = points[:, 2].astype(np.int32)
  boxes = np.asarray(boxes, np.float32)
  num_gt = len(boxes)
  classes = np.arange(num_gt, dtype=np.int32) if classes is None else classes
  valid = np.ones(num_gt, bool) if valid is None else np.asarray(valid)
  if mask_points is None:
    mask_points = np.ones((num_gt, len(points)), bool)
  out = jitted_targets(boxes, classes, valid, mask_points, points[:, :2],
                       np.float32(STRIDES)[level], level,
                       sample_in_mask=sample_in_mask)
  return jax.tree.map(np.asarray, out)


def square(x, y, half):
  """A box whose sides all lie `half` pixels from (x, y)."""
  return [x - half, y - half, x + half, y + half]


def test_center_radius_edge_is_strict_at_one_and_a_half_strides():
  # Stride 8: region x in (88, 112) around the centre 100 of a 60 px box.
  points = [(111, 100, 0), (112, 100, 0), (89, 100, 0), (88, 100, 0),
            (100, 111.9, 0), (100, 112, 0)]
  out = assign(points, [[70, 70, 130, 130]])
  np.testing.assert_array_equal(out['labels'], [1, 0, 1, 0, 1, 0])
  # Stride 16 (P4): +-24; the 200 px box keeps max(l,t,r,b) in [64, 128].
  out = assign([(123, 100, 1), (124, 100, 1)], [[0, 0, 200, 200]])
  np.testing.assert_array_equal(out['labels'], [1, 0])


def test_center_region_is_cut_by_a_thin_box():
  # Box x in [96, 104]: the +-12 region is cut to (96, 104).
  out = assign([(103, 100, 0), (104, 100, 0), (97, 100, 0), (96, 100, 0)],
               [[96, 60, 104, 140]])
  np.testing.assert_array_equal(out['labels'], [1, 0, 1, 0])


@pytest.mark.parametrize('level', range(5))
def test_scale_range_bounds_are_inclusive(level):
  lo = (-1, 64, 128, 256, 512)[level]
  hi = (64, 128, 256, 512, None)[level]
  x = y = 2000.0
  # Boxes are centred on the location, so max(l, t, r, b) is the half size;
  # the location always lies inside the centre region.
  sizes = [lo, lo - 1] if level else []
  sizes += [hi, hi + 1] if hi else [10000]
  for size in sizes:
    out = assign([(x, y, level)], [square(x, y, size)])
    expected = int(size >= lo and (hi is None or size <= hi))
    assert out['labels'][0] == expected, (level, size)


def test_size_64_belongs_to_p3_and_p4():
  box = [square(500, 500, 64)]
  both = assign([(500, 500, 0), (500, 500, 1), (500, 500, 2)], box)
  np.testing.assert_array_equal(both['labels'], [1, 1, 0])


def test_sample_in_mask_drops_locations_off_the_mask():
  points = [(100, 100, 0), (104, 100, 0)]
  boxes = [[70, 70, 130, 130]]
  on_mask = np.array([[True, False]])
  out = assign(points, boxes, mask_points=on_mask, sample_in_mask=True)
  np.testing.assert_array_equal(out['labels'], [1, 0])
  np.testing.assert_array_equal(out['matched'], [0, -1])
  out = assign(points, boxes, mask_points=on_mask, sample_in_mask=False)
  np.testing.assert_array_equal(out['labels'], [1, 1])


def test_in_mask_rule_passes_the_location_to_another_gt():
  boxes = [[90, 90, 110, 110], [70, 70, 130, 130]]  # GT 0 is smaller.
  on_mask = np.array([[False], [True]])
  out = assign([(100, 100, 0)], boxes, mask_points=on_mask,
               sample_in_mask=True)
  assert out['matched'][0] == 1 and out['labels'][0] == 2


def test_smallest_area_wins_with_the_plus_one_convention():
  # 10 x 40 and 20 x 20 px: equal plain areas (400), but +1 areas 451 > 441.
  tall, square_box = [95, 80, 105, 120], [90, 90, 110, 110]
  out = assign([(100, 100, 0)], [tall, square_box], classes=np.int32([4, 7]))
  assert out['matched'][0] == 1 and out['labels'][0] == 8
  out = assign([(100, 100, 0)], [square_box, tall], classes=np.int32([7, 4]))
  assert out['matched'][0] == 0 and out['labels'][0] == 8


def test_equal_areas_go_to_the_first_gt():
  a, b = [90, 90, 110, 110], [91, 91, 111, 111]
  assert assign([(100, 100, 0)], [a, b])['matched'][0] == 0
  assert assign([(100, 100, 0)], [b, a])['matched'][0] == 0


def test_padding_rows_never_match():
  boxes = [[90, 90, 110, 110], [70, 70, 130, 130]]
  out = assign([(100, 100, 0)], boxes, valid=[False, True])
  assert out['matched'][0] == 1
  out = assign([(100, 100, 0)], boxes, valid=[False, False])
  assert out['matched'][0] == -1 and out['labels'][0] == 0
  assert out['centerness_targets'][0] == 0


def test_first_gt_centred_on_x_0_leaves_the_image_positive():
  # The reference's get_sample_region returns no positive at all when GT 0's
  # centre x is 0 (a "no GT" test); we do not (docs/reference_fixes.md).
  boxes = [[-10, 90, 10, 110], [170, 170, 230, 230]]
  out = assign([(4, 100, 0), (196, 196, 0)], boxes)
  np.testing.assert_array_equal(out['matched'], [0, 1])


def test_regression_and_centerness_targets():
  # l, t, r, b = 20, 10, 30, 10 pixels at stride 8; the far location is negative.
  out = assign([(100, 100, 0), (300, 300, 0)], [[80, 90, 130, 110]])
  np.testing.assert_allclose(out['box_targets'][0],
                             np.array([20, 10, 30, 10]) / 8)
  np.testing.assert_allclose(out['centerness_targets'][0], np.sqrt(20 / 30),
                             rtol=1e-6)
  # Negatives keep the distances to GT 0 (only the label says negative).
  np.testing.assert_allclose(out['box_targets'][1],
                             np.array([220, 210, -170, -190]) / 8)
  assert out['centerness_targets'][1] == 0 and out['matched'][1] == -1


def test_jit_vmap_over_a_canvas_matches_per_image_calls():
  xy, stride, level = fcos_geometry.locations(64, 64, STRIDES)
  rng = np.random.default_rng(0)
  corner = rng.uniform(0, 30, (2, 3, 2))
  boxes = np.concatenate([corner, corner + rng.uniform(8, 34, (2, 3, 2))], -1)
  classes = rng.integers(0, 3, (2, 3)).astype(np.int32)
  valid = np.array([[True, True, False], [True, False, False]])
  mask_points = rng.random((2, 3, len(xy))) < 0.8
  targets = functools.partial(fcos_targets, xy=xy, stride=stride, level=level)
  batched = jax.jit(jax.vmap(targets))(
      jnp.asarray(boxes, jnp.bfloat16), classes, valid, mask_points)
  assert batched['box_targets'].dtype == jnp.float32
  assert batched['labels'].shape == (2, len(xy))
  assert (batched['labels'] > 0).any()
  for i in range(2):
    single = jax.jit(targets)(jnp.asarray(boxes[i], jnp.bfloat16), classes[i],
                     valid[i], mask_points[i])
    for key, value in single.items():
      np.testing.assert_array_equal(batched[key][i], value)
  # Padding rows are never matched.
  assert not np.isin(np.asarray(batched['matched'][1]), [1, 2]).any()


@pytest.mark.parametrize('box, levels', [
    ([350, 350, 650, 640], {2}),  # About 300 px: P5.
    ([300, 200, 800, 760], {3}),  # About 500-560 px: P6.
    ([100, 80, 999.5, 989.5], {3, 4}),  # About 900 px: P6 and P7.
])
def test_large_objects_go_to_the_coarse_levels(box, levels):
  # A whole 1024 x 1024 canvas: only the coarse levels' centre regions reach
  # max(l, t, r, b) >= 128 (P5), 256 (P6) or 512 (P7); their ltrb targets,
  # decoded with their own stride, give the box back.
  xy, stride, level = fcos_geometry.locations(1024, 1024, STRIDES)
  out = jitted_targets(np.float32([box]), np.int32([2]), np.array([True]),
                       np.ones((1, len(xy)), bool), xy, stride, level)
  positive = out['labels'] > 0
  assert set(np.unique(level[positive])) == levels
  assert (out['labels'][positive] == 3).all()
  ltrb = np.asarray(out['box_targets'])[positive] * stride[positive, None]
  decoded = np.concatenate([xy[positive] - ltrb[:, :2],
                            xy[positive] + ltrb[:, 2:]], axis=1)
  np.testing.assert_allclose(decoded, np.broadcast_to(box, decoded.shape),
                             atol=1e-4)
