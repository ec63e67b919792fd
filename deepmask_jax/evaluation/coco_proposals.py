"""COCO proposal metrics: average recall with pycocotools' COCOeval.

Class-agnostic proposal scoring as in the DeepMask/SharpMask papers and the
PyTorch port: `useCats = 0` (ground truth and proposals of an image are
pooled across categories), `maxDets = [10, 100, 1000]`, IoU .50:.05:.95,
for both `segm` (masks) and `bbox`. The figures are COCOeval's own summary
`stats[6:12]`: AR@10, AR@100, AR@1000 and AR small / medium / large at 1000
(-1 where no ground truth falls in an area range, the COCO convention).

Every image id given is evaluated, including images without any proposal
(their objects count as missed); proposals for image ids outside the ground
truth are an error rather than something COCOeval would drop.
"""

import contextlib
import copy
import io
import json
import os
from typing import Optional, Sequence

from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from deepmask_jax.evaluation.ground_truth import coverage_line

MAX_DETS = (10, 100, 1000)
# (figure name, index in COCOeval.stats).
METRICS = (('AR@10', 6), ('AR@100', 7), ('AR@1000', 8),
           ('AR_small@1000', 9), ('AR_medium@1000', 10),
           ('AR_large@1000', 11))
AR_NAMES = tuple(name for name, _ in METRICS)
IOU_TYPES = ('segm', 'bbox')


def load_results(coco_gt: COCO, results: list[dict]) -> COCO:
  """`coco_gt.loadRes(results)`, which also accepts an empty list.

  loadRes adds keys ('id', 'area', and 'bbox' to segm records) to the dicts
  it is given; it gets copies, so one list can be evaluated several times.
  """
  if results:
    with contextlib.redirect_stdout(io.StringIO()):
      return coco_gt.loadRes([dict(record) for record in results])
  empty = COCO()
  empty.dataset = {'images': copy.deepcopy(coco_gt.dataset['images']),
                   'categories': copy.deepcopy(
                       coco_gt.dataset.get('categories', [])),
                   'annotations': []}
  with contextlib.redirect_stdout(io.StringIO()):
    empty.createIndex()
  return empty


def check_image_ids(coco_gt: COCO, results: list[dict],
                    image_ids: Sequence[int]) -> None:
  """Raises if a result names an image that is not evaluated."""
  known = set(coco_gt.getImgIds())
  missing = sorted(set(image_ids) - known)
  if missing:
    raise ValueError(f'image ids not in the ground truth: {missing[:10]}')
  stray = sorted({r['image_id'] for r in results} - set(image_ids))
  if stray:
    raise ValueError(f'{len(stray)} image ids have proposals but are not '
                     f'evaluated (not in the ground truth or not listed): '
                     f'{stray[:10]}')


def coco_stats(coco_gt: COCO, results: list[dict], iou_type: str,
               image_ids: Sequence[int], use_cats: bool,
               max_dets: Sequence[int]) -> list[float]:
  """COCOeval's summary `stats` (12 figures) of results on `image_ids`."""
  if iou_type not in IOU_TYPES:
    raise ValueError(f'iou_type must be one of {IOU_TYPES}, got {iou_type!r}')
  check_image_ids(coco_gt, results, image_ids)
  evaluator = COCOeval(coco_gt, load_results(coco_gt, results), iou_type)
  evaluator.params.imgIds = sorted(int(i) for i in image_ids)
  evaluator.params.useCats = int(use_cats)
  evaluator.params.maxDets = list(max_dets)
  with contextlib.redirect_stdout(io.StringIO()):
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  return [float(value) for value in evaluator.stats]


def average_recall(coco_gt: COCO, results: list[dict], iou_type: str,
                   image_ids: Sequence[int]) -> dict[str, float]:
  """AR figures (METRICS) of class-agnostic proposals on `image_ids`."""
  stats = coco_stats(coco_gt, results, iou_type, image_ids, use_cats=False,
                     max_dets=MAX_DETS)
  return {name: stats[index] for name, index in METRICS}


def format_table(figures: dict,
                 metric_groups: Sequence[Sequence[str]] = (AR_NAMES,)) -> str:
  """A text table: per group of metrics, a header and one row per IoU type."""
  lines = ([coverage_line(figures)] if 'images_scored' in figures
           else [f'images evaluated: {figures["num_images"]}'])
  for names in metric_groups:
    lines.append(f'{"":6}' + ''.join(f'{name:>16}' for name in names))
    for iou_type in IOU_TYPES:
      if iou_type in figures:
        cells = [figures[iou_type][name] for name in names]
        lines.append(f'{iou_type:6}' + ''.join(
            f'{value:16.4f}' if value >= 0 else f'{"-":>16}'
            for value in cells))
  return '\n'.join(lines)


def report(figures: dict, out_path: Optional[str] = None,
           verbose: bool = True,
           metric_groups: Sequence[Sequence[str]] = (AR_NAMES,)) -> None:
  """Prints the figures as a table and writes them as JSON to `out_path`."""
  if verbose:
    print(format_table(figures, metric_groups))
  if out_path:
    os.makedirs(os.path.dirname(os.path.abspath(out_path)), exist_ok=True)
    with open(out_path, 'w') as f:
      json.dump(figures, f, indent=2)


def evaluate_proposals(coco_gt: COCO, segm: list[dict], bbox: list[dict],
                       image_ids: Sequence[int]) -> dict:
  """Segm and bbox AR of proposals.

  Args:
    coco_gt: the ground truth.
    segm, bbox: results lists (deepmask_jax/evaluation/results_json.py).
    image_ids: every image evaluated (those without proposals included).
  Returns:
    {'num_images', 'num_proposals': {'segm', 'bbox'}, 'segm': {metric:
    value}, 'bbox': {...}}.
  """
  return {'num_images': len(set(image_ids)),
          'num_proposals': {'segm': len(segm), 'bbox': len(bbox)},
          'segm': average_recall(coco_gt, segm, 'segm', image_ids),
          'bbox': average_recall(coco_gt, bbox, 'bbox', image_ids)}
