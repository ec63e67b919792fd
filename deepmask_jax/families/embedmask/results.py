"""COCO results records of EmbedMask detections (segm and bbox, category ids).

Detections carry a contiguous class label 0..C-1; the dataset's category id
of label i is category_ids[i] (the order of the training categories).
Records are written as for proposals (evaluation/results_json.py). Boxes
follow maskrcnn-benchmark's xyxy -> xywh conversion, w = x1 - x0 + 1.
"""

from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils

from deepmask_jax.evaluation.results_json import bbox_results, segm_results
from deepmask_jax.families.embedmask.paste import (paste_masks, rescale_boxes,
                                                   xyxy_to_xywh)


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
