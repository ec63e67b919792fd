"""COCOeval AR of proposals: perfect, hand-computable, counted, none dropped."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from deepmask_jax.evaluation.coco_proposals import (average_recall,
                                                    evaluate_proposals,
                                                    format_table, report)
from deepmask_jax.evaluation.results_json import bbox_results, segm_results
from tests.evaluation.conftest import rectangle_coco, rectangle_rle

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def rectangles_as_proposals(image_id, height, width, rectangles, scores,
                            category_id=3):
  rles = [rectangle_rle(height, width, *r) for r in rectangles]
  boxes = np.array(rectangles, np.float64).reshape(-1, 4)
  return (segm_results(image_id, rles, scores, category_id),
          bbox_results(image_id, boxes, scores, category_id))


def test_ground_truth_as_proposals_scores_one_on_coco_tiny(coco_tiny):
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(str(coco_tiny / 'annotations' / 'instances_val2017.json'))
  image_ids = sorted(coco.getImgIds())[:12]
  segm, bbox = [], []
  for ann in coco.loadAnns(coco.getAnnIds(imgIds=image_ids, iscrowd=False)):
    rle = coco.annToRLE(ann)
    segm += segm_results(ann['image_id'], [rle], [1.0], 1)
    bbox += bbox_results(ann['image_id'], np.array([ann['bbox']]), [1.0], 1)
  figures = evaluate_proposals(coco, segm, bbox, image_ids)
  assert figures['num_images'] == 12
  # (AR@10 is below 1 where an image has more than 10 objects.)
  assert max(len(coco.getAnnIds(imgIds=i)) for i in image_ids) <= 100
  for iou_type in ('segm', 'bbox'):
    for name in ('AR@100', 'AR@1000', 'AR_small@1000', 'AR_medium@1000',
                 'AR_large@1000'):
      assert figures[iou_type][name] == pytest.approx(1.0), (iou_type, name)


def test_shifted_proposals_score_the_share_of_thresholds_below_their_iou():
  # Two 100 x 100 squares; proposals shifted right by 20 and 10 px:
  # IoU = (100 - d) / (100 + d) = 0.667 and 0.818.
  coco = rectangle_coco([(1, 400, 400)], [(1, 20, 20, 100, 100),
                                          (1, 220, 220, 100, 100)])
  segm, bbox = rectangles_as_proposals(
      1, 400, 400, [(40, 20, 100, 100), (230, 220, 100, 100)], [0.9, 0.8])
  ious = [(100 - 20) / (100 + 20), (100 - 10) / (100 + 10)]
  expected = np.mean([(THRESHOLDS <= iou + 1e-12).mean() for iou in ious])
  assert expected == pytest.approx(0.55)
  for iou_type, results in (('segm', segm), ('bbox', bbox)):
    figures = average_recall(coco, results, iou_type, [1])
    assert figures['AR@10'] == pytest.approx(expected), iou_type
    assert figures['AR_large@1000'] == pytest.approx(expected)
    assert figures['AR_small@1000'] == -1  # No small objects.


def test_max_dets_cut_the_proposals_by_score():
  coco = rectangle_coco([(1, 200, 200)], [(1, 50, 50, 40, 40)])
  misses = [(150, 150, 10, 10)] * 10
  segm, bbox = rectangles_as_proposals(
      1, 200, 200, misses + [(50, 50, 40, 40)], [0.9] * 10 + [0.1])
  for iou_type, results in (('segm', segm), ('bbox', bbox)):
    figures = average_recall(coco, results, iou_type, [1])
    assert figures['AR@10'] == 0.0
    assert figures['AR@100'] == figures['AR@1000'] == pytest.approx(1.0)


def test_area_ranges_split_the_recall():
  coco = rectangle_coco([(1, 300, 300)], [
      (1, 0, 0, 20, 20), (1, 100, 0, 50, 50), (1, 0, 100, 120, 120)])
  segm, bbox = rectangles_as_proposals(
      1, 300, 300, [(100, 0, 50, 50), (0, 100, 120, 120)], [0.9, 0.8])
  figures = average_recall(coco, segm, 'segm', [1])
  assert figures['AR_small@1000'] == 0.0
  assert figures['AR_medium@1000'] == pytest.approx(1.0)
  assert figures['AR_large@1000'] == pytest.approx(1.0)
  assert figures['AR@1000'] == pytest.approx(2 / 3)


def test_images_without_proposals_are_counted_not_dropped(tmp_path):
  coco = rectangle_coco([(1, 100, 100), (2, 100, 100), (3, 100, 100)],
                        [(1, 10, 10, 30, 30), (2, 10, 10, 30, 30),
                         (3, 10, 10, 30, 30)])
  segm, bbox = [], []
  for image_id in (1, 2):
    s, b = rectangles_as_proposals(image_id, 100, 100, [(10, 10, 30, 30)],
                                   [0.5])
    segm += s
    bbox += b
  figures = evaluate_proposals(coco, segm, bbox, [1, 2, 3])
  assert figures['num_images'] == 3
  assert figures['segm']['AR@100'] == pytest.approx(2 / 3)
  assert figures['bbox']['AR@100'] == pytest.approx(2 / 3)
  # No proposals at all still evaluates every image.
  assert evaluate_proposals(coco, [], [], [1, 2, 3])['segm']['AR@100'] == 0.0
  stdout = io.StringIO()
  with contextlib.redirect_stdout(stdout):
    report(figures, str(tmp_path / 'metrics.json'))
  assert 'images evaluated: 3' in stdout.getvalue()
  with open(tmp_path / 'metrics.json') as f:
    assert json.load(f)['num_images'] == 3
  assert format_table(figures).count('\n') == 3


def test_proposals_for_images_outside_the_evaluation_raise():
  coco = rectangle_coco([(1, 50, 50)], [(1, 1, 1, 5, 5)])
  segm, _ = rectangles_as_proposals(9, 50, 50, [(1, 1, 5, 5)], [0.5])
  with pytest.raises(ValueError, match='not evaluated'):
    average_recall(coco, segm, 'segm', [1])
  with pytest.raises(ValueError, match='not in the ground truth'):
    average_recall(coco, [], 'segm', [1, 4])
