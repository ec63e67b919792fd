"""COCO results JSON: valid for loadRes, str counts, GT categories, no bbox in segm."""

import json

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from deepmask_jax.evaluation.results_json import (bbox_results,
                                                  proposal_category_id,
                                                  segm_results, write_results)
from tests.evaluation.conftest import rectangle_coco


def proposals(height=20, width=30, count=3):
  masks = np.zeros((height, width, count), np.uint8, order='F')
  for k in range(count):
    masks[2 + k:10 + k, 3:12 + 4 * k, k] = 1
  rles = mask_utils.encode(masks)
  return rles, mask_utils.toBbox(rles), np.array([0.9, 0.5, 0.2])


def test_segm_and_bbox_files_load_with_the_ground_truth(tmp_path):
  coco = rectangle_coco([(7, 20, 30)], [(7, 1, 1, 5, 5)])
  rles, boxes, scores = proposals()
  category = proposal_category_id(coco)
  write_results(str(tmp_path / 'segm.json'),
                segm_results(7, rles, scores, category))
  write_results(str(tmp_path / 'bbox.json'),
                bbox_results(7, boxes, scores, category))
  with open(tmp_path / 'segm.json') as f:
    segm = json.load(f)
  assert all(isinstance(r['segmentation']['counts'], str) for r in segm)
  assert all('bbox' not in r for r in segm)
  assert {r['category_id'] for r in segm} <= set(coco.getCatIds())
  loaded = coco.loadRes(str(tmp_path / 'segm.json'))
  areas = [a['area'] for a in loaded.loadAnns(loaded.getAnnIds())]
  np.testing.assert_allclose(areas, mask_utils.area(rles))  # Mask areas.
  loaded = coco.loadRes(str(tmp_path / 'bbox.json'))
  np.testing.assert_allclose(
      [a['bbox'] for a in loaded.loadAnns(loaded.getAnnIds())], boxes)


def test_category_is_taken_from_the_ground_truth():
  assert proposal_category_id(rectangle_coco([(1, 5, 5)], [],
                                             categories=(4, 9))) == 4


def test_mismatched_lengths_raise():
  rles, boxes, scores = proposals()
  with pytest.raises(ValueError):
    segm_results(1, rles, scores[:2], 1)
  with pytest.raises(ValueError):
    bbox_results(1, boxes[:1], scores, 1)
