"""COCO instance metrics: ground truth scores 1, shifted boxes score less."""

import contextlib
import io
import json

import numpy as np
import pytest
from pycocotools.coco import COCO

from deepmask_jax.evaluation.coco_instances import (AP_NAMES,
                                                    evaluate_instances,
                                                    report_instances)
from deepmask_jax.evaluation.coco_proposals import AR_NAMES
from deepmask_jax.families.embedmask.results import (instance_bbox_results,
                                                     instance_segm_results)
from tests.evaluation.conftest import rectangle_coco

THRESHOLDS = np.linspace(0.5, 0.95, 10)


def ground_truth_as_detections(coco, image_ids, category_ids):
  """Every non-crowd object as a detection of its own class, score 1."""
  label_of = {c: i for i, c in enumerate(category_ids)}
  segm, bbox = [], []
  for image_id in image_ids:
    anns = coco.loadAnns(coco.getAnnIds(imgIds=image_id, iscrowd=False))
    if not anns:
      continue
    masks = np.stack([coco.annToMask(a).astype(bool) for a in anns])
    xywh = np.array([a['bbox'] for a in anns])
    xyxy = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] - 1], 1)
    labels = [label_of[a['category_id']] for a in anns]
    scores = np.ones(len(anns))
    segm += instance_segm_results(image_id, masks, scores, labels,
                                  category_ids)
    bbox += instance_bbox_results(image_id, xyxy, scores, labels,
                                  category_ids)
  return segm, bbox


def test_ground_truth_scores_one_on_coco_tiny(coco_tiny, tmp_path, capsys):
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(str(coco_tiny / 'annotations' / 'instances_val2017.json'))
  image_ids = sorted(coco.getImgIds())
  category_ids = sorted(coco.getCatIds())
  segm, bbox = ground_truth_as_detections(coco, image_ids, category_ids)
  crowd = len(coco.getAnnIds(imgIds=image_ids, iscrowd=True))
  assert crowd > 0 and len(segm) == len(coco.getAnnIds(imgIds=image_ids)) - crowd
  assert 'bbox' not in segm[0]
  figures = evaluate_instances(coco, segm, bbox, image_ids)
  assert figures['num_images'] == len(image_ids)
  for iou_type in ('segm', 'bbox'):
    for name in AP_NAMES + ('AR@100', 'AR@1000', 'AR_small@1000',
                            'AR_medium@1000', 'AR_large@1000'):
      assert figures[iou_type][name] == pytest.approx(1.0), (iou_type, name)
  report_instances(figures, str(tmp_path / 'metrics.json'))
  table = capsys.readouterr().out
  assert all(name in table for name in AP_NAMES + AR_NAMES)
  assert json.loads((tmp_path / 'metrics.json').read_text()) == figures


def test_wrong_categories_score_zero_ap_but_full_recall(coco_tiny):
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(str(coco_tiny / 'annotations' / 'instances_val2017.json'))
  image_ids = sorted(coco.getImgIds())[:10]
  category_ids = sorted(coco.getCatIds())
  shuffled = category_ids[1:] + category_ids[:1]  # Label i -> the next id.
  segm, bbox = ground_truth_as_detections(coco, image_ids, category_ids)
  for record in segm + bbox:
    record['category_id'] = shuffled[category_ids.index(record['category_id'])]
  figures = evaluate_instances(coco, segm, bbox, image_ids)
  for iou_type in ('segm', 'bbox'):
    assert figures[iou_type]['AP'] == 0.0
    assert figures[iou_type]['AR@1000'] == pytest.approx(1.0)


def test_shifted_boxes_score_the_known_ap():
  # Two 100 x 100 squares of category 5 (label 1); detections shifted right
  # by 10 px (IoU 0.818, score 0.9) and 20 px (IoU 0.667, score 0.8).
  coco = rectangle_coco([(1, 400, 400)], [(1, 20, 20, 100, 100),
                                          (1, 220, 220, 100, 100)],
                        categories=(5,))
  boxes = np.array([[30, 20, 129, 119], [240, 220, 339, 319]])
  masks = np.zeros((2, 400, 400), bool)
  masks[0, 20:120, 30:130] = masks[1, 220:320, 240:340] = True
  scores, labels, category_ids = [0.9, 0.8], [1, 1], [3, 5]
  segm = instance_segm_results(1, masks, scores, labels, category_ids)
  bbox = instance_bbox_results(1, boxes, scores, labels, category_ids)
  assert bbox[0]['bbox'] == [30, 20, 100, 100] and bbox[0]['category_id'] == 5
  # IoU thresholds up to 0.65 match both; 0.7..0.8 only the first (the best
  # scored: precision 1 up to recall 0.5, so 51 of the 101 recall points).
  ious = np.array([90 / 110, 80 / 120])
  per_threshold = [1.0 if t <= ious.min() else 51 / 101 if t <= ious.max()
                   else 0.0 for t in THRESHOLDS]
  figures = evaluate_instances(coco, segm, bbox, [1])
  for iou_type in ('segm', 'bbox'):
    assert figures[iou_type]['AP'] == pytest.approx(np.mean(per_threshold))
    assert figures[iou_type]['AP50'] == pytest.approx(1.0)
    assert figures[iou_type]['AP75'] == pytest.approx(51 / 101)
    assert figures[iou_type]['AP_small'] == -1  # No small objects.
