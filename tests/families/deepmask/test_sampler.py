"""sampler: the geometry of mask and score samples, checked on coco_tiny specs."""

import math

import numpy as np
import pytest
from scipy import stats

from deepmask_jax.families.deepmask import sampler as sampler_lib

GEOMETRY = sampler_lib.PatchGeometry()  # The reference values.
NUM_SPECS = 3000


@pytest.fixture(scope='module')
def index(coco_tiny_builder):
  from deepmask_jax.families.deepmask import input_pipeline  # pylint: disable=g-import-not-at-top
  return input_pipeline.load_object_index(coco_tiny_builder, 'train')


@pytest.fixture(scope='module')
def sampler(index):
  return sampler_lib.PatchSampler(index, GEOMETRY)


@pytest.fixture(scope='module')
def mask_specs(sampler):
  return sampler.mask_specs(seed=3, sample_ids=range(NUM_SPECS))


@pytest.fixture(scope='module')
def score_specs(sampler):
  return sampler.score_specs(seed=3, sample_ids=range(NUM_SPECS))


def _max_dims(index, objects):
  return index.bbox[objects, 2:].max(axis=1)


def _centres(index, objects):
  return index.bbox[objects, :2] + index.bbox[objects, 2:] / 2


def test_reference_sizes():
  assert (GEOMETRY.window_size, GEOMETRY.object_size) == (192, 92)


def test_mask_categories_are_uniform(index, mask_specs):
  labels = index.label[mask_specs.object_index]
  categories = np.unique(index.label[index.mask_sources()])
  counts = np.array([(labels == c).sum() for c in categories])
  assert counts.sum() == NUM_SPECS  # No label outside the valid categories.
  assert stats.chisquare(counts).pvalue > 1e-3


def test_mask_objects_are_valid_sources(index, mask_specs):
  objects = mask_specs.object_index
  assert index.mask_sources()[objects].all()
  assert not index.iscrowd[objects].any()
  assert (index.area[objects] >= 100).all()
  assert (index.bbox[objects, 2:] >= 5).all()
  assert (mask_specs.object_slot == index.object_slot[objects]).all()
  assert (mask_specs.image_index == index.object_image[objects]).all()


def test_mask_objects_are_centred_and_canonical_size(index, mask_specs):
  objects = mask_specs.object_index
  zoom = 2.0 ** mask_specs.log2_zoom
  offset = (_centres(index, objects) - mask_specs.centre) * zoom[:, None]
  assert np.abs(offset).max() <= GEOMETRY.shift + 1e-3
  side_in_patch = _max_dims(index, objects) * zoom
  assert side_in_patch.min() >= 92 * 2 ** -0.25 - 1e-3  # 77.4 px.
  assert side_in_patch.max() <= 92 * 2 ** 0.25 + 1e-3  # 109.4 px.
  # The jitter covers its range.
  assert np.abs(offset).max() > 0.9 * GEOMETRY.shift
  assert side_in_patch.min() < 80 and side_in_patch.max() > 106


def _check_windows(specs, min_side=0):
  """The rounded windows match the exact centres and zooms."""
  x0, y0, side = specs.window.T
  exact_side = np.maximum(GEOMETRY.window_size * 2.0 ** -specs.log2_zoom, min_side)
  assert np.abs(side - exact_side).max() <= 0.5 + 1e-3
  centre = np.stack([x0 + side / 2, y0 + side / 2], 1)
  assert np.abs(centre - specs.centre).max() <= 1.0 + 1e-3
  lx0, ly0, lside = specs.label_window.T
  assert np.abs(lside - side * 160 / 192).max() <= 0.5 + 1e-3
  label_centre = np.stack([lx0 + lside / 2, ly0 + lside / 2], 1)
  assert np.abs(label_centre - centre).max() <= 1.0 + 1e-3


def test_mask_windows_are_rounded_jitter_boxes(mask_specs):
  _check_windows(mask_specs)


def test_score_windows_are_rounded_boxes(score_specs):
  _check_windows(score_specs, min_side=10)


def test_score_samples_are_half_positive(score_specs):
  positives = int((score_specs.score == 1).sum())
  assert set(np.unique(score_specs.score)) == {-1.0, 1.0}
  assert stats.binomtest(positives, NUM_SPECS, 0.5).pvalue > 1e-3
  assert (score_specs.object_slot == -1).all()


def test_score_positives_are_centred_at_canonical_scale(index, score_specs):
  positive = score_specs.score == 1
  objects = score_specs.object_index[positive]
  assert (objects >= 0).all() and (score_specs.object_index[~positive] == -1).all()
  np.testing.assert_allclose(score_specs.centre[positive],
                             _centres(index, objects), atol=1e-3)
  side_in_patch = _max_dims(index, objects) * 2.0 ** score_specs.log2_zoom[positive]
  assert side_in_patch.min() > 92 * (1 - 1e-5)
  assert side_in_patch.max() <= 92 * 2 ** 0.25 * (1 + 1e-5)
  # Positives come from images with at least one annotation.
  assert (np.diff(index.first_object)[score_specs.image_index] > 0).all()


def test_scale_bins_are_the_smallest_fitting_integer():
  max_dims = np.array([92.0, 92.5, 109.4, 46.0, 5.0, 640.0, 1e-6])
  bins = sampler_lib.scale_bins(max_dims, 92)
  for max_dim, found in zip(max_dims, bins):
    fitting = [s for s in range(-32, 33)
               if 92 * 2 ** ((s - 1) / 4) < max_dim <= 92 * 2 ** ((s + 1) / 4)]
    if fitting:
      assert found == fitting[0]
      assert 92 < max_dim * 2 ** (-found / 4) <= 92 * 2 ** 0.25 + 1e-9
    else:
      assert found == np.iinfo(np.int32).min


def test_negatives_obey_the_distance_rule_in_the_patch_frame(index, sampler):
  bins = sampler.bins
  binned = bins != np.iinfo(np.int32).min
  accepted = 0
  for draw in range(400):
    rng = np.random.default_rng([11, draw])
    image = int(sampler.score_images[draw % len(sampler.score_images)])
    x, y, log2_zoom, ok = sampler.negative_point(rng, image)
    height, width = index.image_size[image]
    assert 0 <= x <= width and 0 <= y <= height
    assert log2_zoom in np.arange(-3, 2.01, 0.25)
    if not ok:
      continue
    accepted += 1
    objects = np.arange(index.first_object[image], index.first_object[image + 1])
    objects = objects[binned[objects]]
    near_scale = np.abs(-bins[objects] / 4 - log2_zoom) <= 2.5
    zoom = 2.0 ** log2_zoom
    distance = np.hypot(*((_centres(index, objects) - (x, y)) * zoom).T)
    assert (distance[near_scale] >= GEOMETRY.negative_distance).all()
  assert accepted > 0.9 * 400


def test_specs_are_pure_functions_of_seed_and_sample_id(sampler):
  ids = np.arange(40, 60)
  for draw in (sampler.mask_specs, sampler.score_specs):
    together = draw(5, ids)
    alone = draw(5, ids[7:8])
    again = draw(5, ids)
    other_seed = draw(6, ids)
    np.testing.assert_array_equal(together.window, again.window)
    np.testing.assert_array_equal(together.window[7:8], alone.window)
    np.testing.assert_array_equal(together.flip[7:8], alone.flip)
    assert (together.window != other_seed.window).any()


def test_flip_is_a_fair_coin_and_can_be_turned_off(index, mask_specs):
  flips = int(mask_specs.flip.sum())
  assert stats.binomtest(flips, NUM_SPECS, 0.5).pvalue > 1e-3
  no_flip = sampler_lib.PatchSampler(index, sampler_lib.PatchGeometry(flip=False))
  specs = no_flip.mask_specs(seed=3, sample_ids=range(200))
  assert not specs.flip.any()
  np.testing.assert_array_equal(specs.window, mask_specs.window[:200])


def test_head_choice_follows_hfreq_and_is_deterministic():
  heads = np.array([sampler_lib.is_mask_step(1, t, 0.5) for t in range(2000)])
  assert stats.binomtest(int(heads.sum()), 2000, 0.5).pvalue > 1e-3
  again = [sampler_lib.is_mask_step(1, t, 0.5) for t in range(2000)]
  np.testing.assert_array_equal(heads, again)
  assert all(sampler_lib.is_mask_step(1, t, 0.0) for t in range(100))
  assert not any(sampler_lib.is_mask_step(1, t, 1.0) for t in range(100))
  rare = sum(sampler_lib.is_mask_step(1, t, 0.9) for t in range(2000))
  assert math.isclose(rare / 2000, 0.1, abs_tol=0.03)
