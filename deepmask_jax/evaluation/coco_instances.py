"""COCO instance-segmentation metrics of class-aware results (segm and bbox).

Results are records as for proposals (results_json.py): segm records with
RLE masks and no 'bbox' key, bbox records [x, y, w, h], each with the
dataset's category id (a family's results module builds them, e.g.
families/embedmask/results.py).

`evaluate_instances` gives, per IoU type (segm, bbox), COCOeval's category-
aware AP figures (stats[0:6] at maxDets 1/10/100: AP, AP50, AP75, AP_small,
AP_medium, AP_large) and, on the DeepMask proposal harness (category-blind,
maxDets 10/100/1000, coco_proposals.average_recall), AR@10/100/1000 and AR
small/medium/large, so both families fit one table.
"""

from typing import Optional, Sequence

from pycocotools.coco import COCO

from deepmask_jax.evaluation.coco_proposals import (AR_NAMES, average_recall,
                                                    coco_stats, report)

# (figure name, index in COCOeval.stats) with categories, maxDets 1/10/100.
AP_METRICS = (('AP', 0), ('AP50', 1), ('AP75', 2), ('AP_small', 3),
              ('AP_medium', 4), ('AP_large', 5))
AP_NAMES = tuple(name for name, _ in AP_METRICS)
AP_MAX_DETS = (1, 10, 100)
TABLE_GROUPS = (AP_NAMES, AR_NAMES)


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
    segm, bbox: results lists (segm and bbox records, category ids set).
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
