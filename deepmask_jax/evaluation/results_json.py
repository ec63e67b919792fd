"""COCO results JSON for proposals and instances.

Two files per run, as `COCO.loadRes` expects them:
  * segm: [{'image_id', 'category_id', 'segmentation': {'size': [h, w],
    'counts': str}, 'score'}] with no 'bbox' key: loadRes takes the first
    record's keys to decide how to read the file, and a bbox there would make
    every area w*h instead of the mask area (it shifts the S/M/L split);
  * bbox: [{'image_id', 'category_id', 'bbox': [x, y, w, h], 'score'}].
RLEs come from pycocotools (`encode`), their byte `counts` decoded to str.
"""

import json
import os
from typing import Sequence, Union

import numpy as np

# The category proposals carry when there is no ground truth to take one from
# (the reference's released proposals use 1, "person" in COCO).
DEFAULT_CATEGORY_ID = 1


def proposal_category_id(coco_gt) -> int:
  """A category id of the ground truth (the smallest) for class-agnostic
  proposals: results should only name categories the ground truth has."""
  ids = coco_gt.getCatIds()
  if not ids:
    raise ValueError('the ground truth has no categories')
  return int(min(ids))


def _category_per_record(category_id: Union[int, Sequence[int]],
                         count: int) -> list[int]:
  """One category id per record: a single id repeated, or one id each."""
  if isinstance(category_id, (int, np.integer)):
    return [int(category_id)] * count
  ids = [int(i) for i in category_id]
  if len(ids) != count:
    raise ValueError(f'{count} records but {len(ids)} category ids')
  return ids


def _rle_for_json(rle: dict) -> dict:
  counts = rle['counts']
  if isinstance(counts, bytes):
    counts = counts.decode('ascii')
  return {'size': [int(rle['size'][0]), int(rle['size'][1])],
          'counts': counts}


def segm_results(image_id: int, rles: Sequence[dict], scores: Sequence[float],
                 category_id: Union[int, Sequence[int]]) -> list[dict]:
  """Segmentation records of one image (RLE counts as str).

  category_id: one id for every record (proposals) or one per record.
  """
  if len(rles) != len(scores):
    raise ValueError(f'{len(rles)} masks but {len(scores)} scores')
  categories = _category_per_record(category_id, len(rles))
  return [{'image_id': int(image_id), 'category_id': category,
           'segmentation': _rle_for_json(rle), 'score': float(score)}
          for rle, score, category in zip(rles, scores, categories)]


def bbox_results(image_id: int, boxes: np.ndarray, scores: Sequence[float],
                 category_id: Union[int, Sequence[int]]) -> list[dict]:
  """Box records of one image; boxes [K, 4] xywh.

  category_id: one id for every record (proposals) or one per record.
  """
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  if len(boxes) != len(scores):
    raise ValueError(f'{len(boxes)} boxes but {len(scores)} scores')
  categories = _category_per_record(category_id, len(boxes))
  return [{'image_id': int(image_id), 'category_id': category,
           'bbox': [float(v) for v in box], 'score': float(score)}
          for box, score, category in zip(boxes, scores, categories)]


def proposal_results(image_id: int, proposals, category_id: int):
  """(segm, bbox) results of one image's `EncodedProposals`.

  Class-aware predictions carry their own category ids; class-agnostic
  proposals are all given `category_id`.
  """
  categories = (category_id if proposals.category_ids is None
                else proposals.category_ids)
  return (segm_results(image_id, proposals.rles, proposals.scores, categories),
          bbox_results(image_id, proposals.boxes, proposals.scores, categories))


def write_results(path: str, results: list[dict]) -> None:
  """Writes a results list as JSON (via a temporary file, then renamed)."""
  os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
  partial = path + '.partial'
  with open(partial, 'w') as f:
    json.dump(results, f)
  os.replace(partial, path)
