"""COCO instance-segmentation metrics and results JSON (EmbedMask).

Detections carry a contiguous class label 0..C-1; the dataset's category id
of label i is category_ids[i] (the order of the training categories).
Results are written as for proposals (results_json.py): segm records with
RLE masks and no 'bbox' key, bbox records [x, y, w, h]. Boxes follow
maskrcnn-benchmark's xyxy -> xywh conversion, w = x1 - x0 + 1.

`evaluate_instances` gives, per IoU type (segm, bbox), COCOeval's category-
aware AP figures (stats[0:6] at maxDets 1/10/100: AP, AP50, AP75, AP_small,
AP_medium, AP_large) and, on the DeepMask proposal harness (category-blind,
maxDets 10/100/1000, coco_proposals.average_recall), AR@10/100/1000 and AR
small/medium/large, so both families fit one table.
"""

from typing import Optional, Sequence

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO

from deepmask_jax.evaluation.coco_proposals import (AR_NAMES, average_recall,
                                                    coco_stats, report)
from deepmask_jax.evaluation.results_json import bbox_results, segm_results
from deepmask_jax.inference.embedmask_paste import (paste_masks, rescale_boxes,
                                                  xyxy_to_xywh)

# (figure name, index in COCOeval.stats) with categories, maxDets 1/10/100.
AP_METRICS = (('AP', 0), ('AP50', 1), ('AP75', 2), ('AP_small', 3),
              ('AP_medium', 4), ('AP_large', 5))
AP_NAMES = tuple(name for name, _ in AP_METRICS)
AP_MAX_DETS = (1, 10, 100)
TABLE_GROUPS = (AP_NAMES, AR_NAMES)


def dataset_category_ids(labels, category_ids: Sequence[int]) -> list[int]:
  """The dataset's category id of each contiguous label (0..C-1)."""
  labels = np.asarray(labels, np.int64).reshape(-1)
  if labels.size and (labels.min() < 0 or labels.max() >= len(category_ids)):
    raise ValueError(f'labels must lie in 0..{len(category_ids) - 1}, got '
                     f'{labels.min()}..{labels.max()}')
  return [int(category_ids[label]) for label in labels]


def encode_masks(masks: np.ndarray) -> list[dict]:
  """pycocotools RLEs of bool [N, H, W] masks (byte counts)."""
  masks = np.asarray(masks)
  if masks.ndim != 3:
    raise ValueError(f'masks must be [N, H, W], got shape {masks.shape}')
  # [H, W, N] Fortran order: free when each mask is already column-major.
  return mask_utils.encode(np.asfortranarray(
      masks.transpose(1, 2, 0).astype(np.uint8)))


def instance_segm_results(image_id: int, masks: np.ndarray, scores, labels,
                          category_ids: Sequence[int]) -> list[dict]:
  """Segm records of one image's detections.

  masks: bool [N, H, W] at the image's original size; scores [N];
  labels [N] contiguous 0..C-1, mapped through category_ids.
  """
  return segm_results(image_id, encode_masks(masks) if len(masks) else [],
                      scores, dataset_category_ids(labels, category_ids))


def instance_bbox_results(image_id: int, boxes, scores, labels,
                          category_ids: Sequence[int]) -> list[dict]:
  """Bbox records of one image's detections; boxes [N, 4] xyxy original px."""
  return bbox_results(image_id, xyxy_to_xywh(boxes), scores,
                      dataset_category_ids(labels, category_ids))


def detection_results(image_id: int, detections: dict, input_hw,
                      original_hw, category_ids: Sequence[int],
                      paste=paste_masks) -> tuple[list[dict], list[dict]]:
  """(segm, bbox) records of one image's `detect` output.

  Args:
    image_id: the dataset's image id.
    detections: one image of embedmask_postprocess.detect's output ('boxes'
      [n, 4], 'scores', 'labels', 'valid' [n], 'mask_logprob' [n, h4, w4]),
      numpy or device arrays.
    input_hw: (h, w) of the resized image inside the canvas.
    original_hw: (H0, W0) of the image as the dataset has it.
    category_ids: dataset category id of each contiguous label.
    paste: (mask_logprob, input_hw, original_hw) -> bool [N, H0, W0].
  """
  valid = np.asarray(detections['valid'], bool)
  scores = np.asarray(detections['scores'])[valid]
  labels = np.asarray(detections['labels'])[valid]
  boxes = rescale_boxes(np.asarray(detections['boxes'])[valid], input_hw,
                        original_hw)
  masks = (paste(detections['mask_logprob'][np.flatnonzero(valid)],
                 input_hw, original_hw) if valid.any()
           else np.zeros((0,) + tuple(original_hw), bool))
  return (instance_segm_results(image_id, masks, scores, labels, category_ids),
          instance_bbox_results(image_id, boxes, scores, labels, category_ids))


def average_precision(coco_gt: COCO, results: list[dict], iou_type: str,
                      image_ids: Sequence[int]) -> dict[str, float]:
  """AP figures (AP_METRICS) of category-aware detections on `image_ids`."""
  stats = coco_stats(coco_gt, results, iou_type, image_ids, use_cats=True,
                     max_dets=AP_MAX_DETS)
  return {name: stats[index] for name, index in AP_METRICS}


def evaluate_instances(coco_gt: COCO, segm: list[dict], bbox: list[dict],
                       image_ids: Sequence[int]) -> dict:
  """Segm and bbox AP (with categories) and AR (category-blind).

  Args:
    coco_gt: the ground truth (crowd regions are ignored by COCOeval: a
      detection on one is neither a hit nor a false positive).
    segm, bbox: results lists (instance_segm_results, instance_bbox_results).
    image_ids: every image evaluated (those without detections included).
  Returns:
    {'num_images', 'num_detections': {'segm', 'bbox'}, 'segm': {AP_NAMES and
    AR_NAMES: value}, 'bbox': {...}}; -1 where no ground truth falls in an
    area range.
  """
  figures = {'num_images': len(set(image_ids)),
             'num_detections': {'segm': len(segm), 'bbox': len(bbox)}}
  for iou_type, results in (('segm', segm), ('bbox', bbox)):
    figures[iou_type] = {
        **average_precision(coco_gt, results, iou_type, image_ids),
        **average_recall(coco_gt, results, iou_type, image_ids)}
  return figures


def report_instances(figures: dict, out_path: Optional[str] = None,
                     verbose: bool = True) -> None:
  """Prints the AP and AR table; writes the figures as JSON to `out_path`."""
  report(figures, out_path, verbose, metric_groups=TABLE_GROUPS)
