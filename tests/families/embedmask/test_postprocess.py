"""EmbedMask post-processing: exact NMS, candidates, boxes, masks, pasting."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from deepmask_jax.families.embedmask.sampler import reference_boxes
from deepmask_jax.families.embedmask.results import detection_results
from deepmask_jax.families.embedmask.paste import (LogProbPaster,
                                                    paste_masks,
                                                    rescale_boxes)
from deepmask_jax.families.embedmask.postprocess import (DetectSettings,
                                                          class_aware_nms,
                                                          detect)
from deepmask_jax.families.embedmask.fcos_geometry import locations
from deepmask_jax.families.embedmask.targets import fcos_targets

CANVAS = (64, 64)
CLASSES = 3
DIM = 4


def logit(p):
  return math.log(p / (1 - p))


# Greedy NMS written out: the reference's ml_nms semantics. --------------------

def numpy_iou(a, b):
  """+1 pixel IoU of two xyxy float32 boxes, in float32."""
  one = np.float32(1)
  w = max(min(a[2], b[2]) - max(a[0], b[0]) + one, np.float32(0))
  h = max(min(a[3], b[3]) - max(a[1], b[1]) + one, np.float32(0))
  inter = w * h
  area_a = (a[2] - a[0] + one) * (a[3] - a[1] + one)
  area_b = (b[2] - b[0] + one) * (b[3] - b[1] + one)
  return inter / (area_a + area_b - inter)


def numpy_greedy_nms(boxes, scores, labels, valid, threshold):
  order = [i for i in np.argsort(-scores, kind='stable') if valid[i]]
  kept = []
  for i in order:
    if all(labels[i] != labels[j] or numpy_iou(boxes[i], boxes[j]) <= threshold
           for j in kept):
      kept.append(i)
  return kept


def random_boxes(seed, num):
  """Crowded boxes: jittered copies of 40 objects, 3 classes, ~10% invalid."""
  rng = np.random.default_rng(seed)
  objects = rng.uniform(20, 120, (40, 2))
  centre = objects[rng.integers(0, 40, num)] + rng.normal(0, 2, (num, 2))
  size = rng.uniform(25, 35, (num, 2))
  boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
  return (boxes.astype(np.float32), rng.uniform(0, 1, num).astype(np.float32),
          rng.integers(0, 3, num).astype(np.int32), rng.uniform(0, 1, num) > 0.1)


@pytest.mark.parametrize('seed', [0, 1, 2, 3])
def test_device_nms_equals_greedy_nms(seed):
  boxes, scores, labels, valid = random_boxes(seed, 300)
  expected = numpy_greedy_nms(boxes, scores, labels, valid, 0.6)
  assert 30 < len(expected) < valid.sum() - 30  # Much is suppressed.
  nms = jax.jit(class_aware_nms, static_argnames=('iou_threshold', 'max_keep',
                                                  'block'))
  index, kept = nms(boxes, scores, labels, valid, iou_threshold=0.6,
                    max_keep=300, block=64)
  index, kept = np.asarray(index), np.asarray(kept)
  assert kept.sum() == len(expected)
  np.testing.assert_array_equal(index[kept], expected)
  assert not kept[len(expected):].any()
  # A short list is the head of the full one (early stop).
  index, kept = nms(boxes, scores, labels, valid, iou_threshold=0.6,
                    max_keep=20, block=64)
  assert np.asarray(kept).all()
  np.testing.assert_array_equal(np.asarray(index), expected[:20])


def test_nms_is_class_aware_and_uses_the_plus_one_iou():
  # Two 10 x 10 boxes (+1 areas 121) sharing 8 x 11 columns: IoU 88/154.
  boxes = np.array([[0, 0, 10, 10], [3, 0, 13, 10], [3, 0, 13, 10]],
                   np.float32)
  scores = np.array([0.9, 0.8, 0.7], np.float32)
  labels = np.array([0, 0, 1], np.int32)
  valid = np.ones(3, bool)
  iou = 88 / 154
  for threshold, expected in ((iou - 0.01, [0, 2]), (iou + 0.01, [0, 1, 2])):
    index, kept = class_aware_nms(boxes, scores, labels, valid, threshold, 3,
                                  block=2)
    assert list(np.asarray(index)[np.asarray(kept)]) == expected


# detect() on hand-made outputs. ----------------------------------------------

def blank_outputs(batch=1, seed=0):
  """Outputs with no candidate: every class probability ~1e-9."""
  rng = np.random.default_rng(seed)
  num = len(locations(*CANVAS)[0])
  return {
      'cls_logits': np.full((batch, num, CLASSES), -20.0, np.float32),
      'box_regression': np.full((batch, num, 4), 0.25, np.float32),
      'centerness': np.zeros((batch, num), np.float32),
      'proposal_embedding': rng.normal(size=(batch, num, DIM)).astype(
          np.float32),
      'proposal_margin': rng.uniform(0.2, 2, (batch, num, DIM)).astype(
          np.float32),
      'pixel_embedding': rng.normal(
          size=(batch, CANVAS[0] // 4, CANVAS[1] // 4, DIM)).astype(np.float32)}


def location_index(level, row, col):
  """Index in L of a location: levels of 64x64 are 8x8, 4x4, 2x2, 1x1, 1x1."""
  offsets, widths = (0, 64, 80, 84, 85), (8, 4, 2, 1, 1)
  return offsets[level] + row * widths[level] + col


def valid_part(found, image=0):
  valid = np.asarray(found['valid'][image])
  return {key: np.asarray(value[image])[valid] for key, value in found.items()}


def test_threshold_comes_before_the_centerness_product():
  outputs = blank_outputs()
  low_cls = location_index(0, 1, 1)
  outputs['cls_logits'][0, low_cls, 1] = logit(0.06)
  outputs['centerness'][0, low_cls] = logit(0.1)  # Score 0.006 < 0.05: kept.
  below = location_index(0, 4, 4)
  outputs['cls_logits'][0, below, 0] = logit(0.04)  # Not a candidate.
  outputs['centerness'][0, below] = logit(0.99)
  high = location_index(0, 6, 6)
  outputs['cls_logits'][0, high, 2] = logit(0.9)
  found = valid_part(detect(outputs, np.array([CANVAS])))
  np.testing.assert_allclose(found['scores'], [0.45, 0.006], rtol=1e-5)
  np.testing.assert_array_equal(found['labels'], [2, 1])


def test_top_n_is_taken_per_level():
  outputs = blank_outputs()
  for col, p in enumerate([0.5, 0.9, 0.6, 0.8, 0.7]):  # P3, 8 px apart.
    outputs['cls_logits'][0, location_index(0, 0, col), 0] = logit(p)
  for col, p in enumerate([0.3, 0.2]):  # P4: lower than every P3 one.
    outputs['cls_logits'][0, location_index(1, 3, col), 0] = logit(p)
  settings = DetectSettings(pre_nms_top_n=3)
  found = valid_part(detect(outputs, np.array([CANVAS]), settings))
  np.testing.assert_allclose(found['scores'],
                             np.array([0.9, 0.8, 0.7, 0.3, 0.2]) / 2,
                             rtol=1e-5)


def test_boxes_are_decoded_and_clipped_per_image():
  outputs = blank_outputs(batch=2)
  where = location_index(1, 1, 2)  # P4 (stride 16) at x = 40, y = 24.
  outputs['cls_logits'][:, where, 1] = logit(0.7)
  outputs['box_regression'][:, where] = [1.0, 0.5, 2.0, 3.0]
  found = detect(outputs, np.array([[40, 50], CANVAS]))
  first, second = valid_part(found, 0), valid_part(found, 1)
  np.testing.assert_allclose(first['boxes'], [[24, 16, 49, 39]])
  np.testing.assert_allclose(second['boxes'], [[24, 16, 63, 63]])


def test_masks_are_log_probabilities_inside_the_padded_box():
  outputs = blank_outputs(batch=2, seed=3)
  where = location_index(1, 1, 2)
  outputs['cls_logits'][:, where, 1] = logit(0.7)
  outputs['box_regression'][:, where] = [1.0, 0.5, 2.0, 3.0]
  found = detect(outputs, np.array([[40, 50], CANVAS]))
  masks = np.asarray(found['mask_logprob'])
  assert masks.shape == (2, 100, 16, 16)
  for image, box in enumerate([(24, 16, 49, 39), (24, 16, 63, 63)]):
    p = outputs['pixel_embedding'][image]
    q = outputs['proposal_embedding'][image, where]
    m = outputs['proposal_margin'][image, where]
    expected = np.full((16, 16), -10.0, np.float32)
    x0, y0 = max(int(box[0] / 4) - 2, 0), max(int(box[1] / 4) - 2, 0)
    x1, y1 = min(int(box[2] / 4) + 2, 16), min(int(box[3] / 4) + 2, 16)
    expected[y0:y1, x0:x1] = -np.sum(m * (p - q) ** 2, -1)[y0:y1, x0:x1]
    np.testing.assert_allclose(masks[image, 0], expected, rtol=1e-5,
                               atol=1e-5)
    assert (masks[image, 1:] == -10).all()  # Padding rows.
  assert (x0, y0, x1, y1) == (4, 2, 16, 16)  # Clamped at the map's side.


def test_nms_in_detect_suppresses_within_a_class_only():
  for other_class, expected in ((0, 1), (1, 2)):
    outputs = blank_outputs()
    big = location_index(1, 1, 1)  # P4 at (24, 24): box (8, 8, 40, 40).
    outputs['cls_logits'][0, big, 0] = logit(0.9)
    outputs['box_regression'][0, big] = 1.0
    same = location_index(0, 3, 3)  # P3 at (28, 28): the same box.
    outputs['cls_logits'][0, same, other_class] = logit(0.8)
    outputs['box_regression'][0, same] = [2.5, 2.5, 1.5, 1.5]
    found = valid_part(detect(outputs, np.array([CANVAS])))
    assert len(found['scores']) == expected
    np.testing.assert_allclose(found['boxes'][-1], [8, 8, 40, 40])


def test_detections_are_capped_at_the_best_hundred():
  outputs = blank_outputs()
  rng = np.random.default_rng(5)
  outputs['cls_logits'][0, :64] = rng.uniform(0, 3, (64, CLASSES))
  found = detect(outputs, np.array([CANVAS]))
  assert np.asarray(found['valid']).sum() == 100
  all_scores = 0.5 / (1 + np.exp(-outputs['cls_logits'][0, :64].ravel()))
  np.testing.assert_allclose(np.asarray(found['scores'][0]),
                             np.sort(all_scores)[::-1][:100], rtol=1e-5)


def test_settings_come_from_the_config():
  from deepmask_jax.config_schema import get_config  # pylint: disable=g-import-not-at-top
  settings = DetectSettings.from_config(get_config().embedmask)
  assert settings == DetectSettings()


# Pasting at the original size. ------------------------------------------------

def torch_bilinear_reference(values, out_h, out_w):
  """F.interpolate(bilinear, align_corners=False), loop by loop, float32."""

  def taps(out_size, in_size):
    scale = np.float32(in_size) / np.float32(out_size)
    result = []
    for d in range(out_size):
      source = max(scale * np.float32(d + 0.5) - np.float32(0.5), 0)
      low = int(source)
      high = low + 1 if low < in_size - 1 else low
      lam = np.float32(source - low)
      result.append((low, high, np.float32(1) - lam, lam))
    return result

  out = np.zeros((out_h, out_w), np.float32)
  for i, (y0, y1, wy0, wy1) in enumerate(taps(out_h, values.shape[0])):
    for j, (x0, x1, wx0, wx1) in enumerate(taps(out_w, values.shape[1])):
      out[i, j] = (wy0 * (wx0 * values[y0, x0] + wx1 * values[y0, x1])
                   + wy1 * (wx0 * values[y1, x0] + wx1 * values[y1, x1]))
  return out


def test_paste_matches_the_reference_resize_threshold_and_crop():
  rng = np.random.default_rng(0)
  logprob = rng.uniform(-2, 0.5, (3, 8, 10)).astype(np.float32)
  input_hw, original_hw = (30, 37), (45, 50)
  out_h, out_w = math.ceil(8 * 4 * 45 / 30), math.ceil(10 * 4 * 50 / 37)
  masks = paste_masks(logprob, input_hw, original_hw)
  assert masks.shape == (3, 45, 50) and masks.dtype == bool
  for mask, values in zip(masks, logprob):
    resized = torch_bilinear_reference(values, out_h, out_w)[:45, :50]
    clear = np.abs(resized - np.log(0.53)) > 1e-5
    np.testing.assert_array_equal(mask[clear], (resized > np.log(0.53))[clear])
    assert 0.1 < mask.mean() < 0.9


def test_paste_buckets_and_chunks_share_compilations():
  rng = np.random.default_rng(1)
  paster = LogProbPaster(chunk=4, bucket=64)
  logprob = rng.uniform(-2, 0.5, (9, 8, 10)).astype(np.float32)
  first = paster(logprob, (30, 37), (45, 50))
  second = paster(logprob[:5], (30, 37), (47, 60))  # Same 64 x 64 bucket.
  assert paster.compilations == 1
  assert second.shape == (5, 47, 60)
  np.testing.assert_array_equal(first[:5], paste_masks(logprob[:5], (30, 37),
                                                       (45, 50)))
  assert paster(logprob, (30, 37), (45, 70)).shape == (9, 45, 70)
  assert paster.compilations == 2
  assert first[0].transpose().flags['C_CONTIGUOUS']  # Fortran order per mask.


def test_boxes_rescale_to_the_original_size():
  boxes = rescale_boxes(np.array([[10, 20, 30, 40]]), (100, 200), (50, 400))
  np.testing.assert_allclose(boxes, [[20, 10, 60, 20]])


# A large object end to end: targets -> head outputs -> detection -> COCO. ---

def test_large_object_at_p6_p7_decodes_to_its_coco_box_and_mask():
  # A 2048 px image resized to a 1024 canvas; its 1800 x 1820 object's
  # positives lie on P6 and P7. Head outputs set to the targets (class
  # probability 0.8, centerness logit of the target) must give back the
  # COCO box exactly, the score 0.8 x the best centerness, and a mask
  # pasted at 2048 px around the same box.
  canvas, original = (1024, 1024), (2048, 2048)
  coco_box = [200, 160, 1800, 1820]
  box, _ = reference_boxes(np.float32([coco_box]), np.array([original]))
  box = box * 0.5  # Resized, as the training pipeline scales it.
  xy, stride, level = locations(*canvas)
  targets = jax.tree.map(np.asarray, jax.jit(fcos_targets)(
      box, np.int32([1]), np.array([True]), np.ones((1, len(xy)), bool), xy,
      stride, level))
  positive = targets['labels'] > 0
  assert set(np.unique(level[positive])) == {3, 4}
  cells = canvas[0] // 4
  centerness = np.clip(targets['centerness_targets'], 1e-6, 1 - 1e-6)[None]
  outputs = {
      'cls_logits': np.where(positive[:, None] & (np.arange(CLASSES) == 1),
                             logit(0.8), -20.0)[None].astype(np.float32),
      'box_regression': targets['box_targets'][None],
      'centerness': np.float32(np.log(centerness) - np.log1p(-centerness)),
      'proposal_embedding': np.zeros((1, len(xy), DIM), np.float32),
      'proposal_margin': np.ones((1, len(xy), DIM), np.float32),
      'pixel_embedding': np.ones((1, cells, cells, DIM), np.float32)}
  centres = 4 * np.arange(cells) + 2  # Stride-4 cells on the object: p = q.
  inside = ((centres[:, None] >= box[0, 1]) & (centres[:, None] <= box[0, 3])
            & (centres[None] >= box[0, 0]) & (centres[None] <= box[0, 2]))
  outputs['pixel_embedding'][0, inside] = 0.0
  found = detect(outputs, np.array([canvas]),
                 DetectSettings(detections_per_image=5))
  one = jax.tree.map(lambda x: np.asarray(x[0]), found)
  assert one['valid'].sum() == 1  # The positives' equal boxes: NMS keeps one.
  np.testing.assert_allclose(one['boxes'][0], box[0], atol=1e-3)
  np.testing.assert_allclose(
      one['scores'][0], 0.8 * targets['centerness_targets'].max(), rtol=1e-5)
  segm, bbox = detection_results(7, one, canvas, original, [5, 9])
  assert bbox[0]['category_id'] == 9
  np.testing.assert_allclose(bbox[0]['bbox'], coco_box, atol=1e-2)
  x, y, w, h = mask_utils.toBbox(segm[0]['segmentation'])
  # Masks live on stride-4 cells: each side within one (8 original pixels).
  np.testing.assert_allclose([x, y, x + w, y + h],
                             [200, 160, 200 + 1800, 160 + 1820], atol=8)
