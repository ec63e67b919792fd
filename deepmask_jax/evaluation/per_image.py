"""Per-image evaluation on a COCO-format split (evalPerImage + AR, or AP).

Reads the split with pycocotools and PIL (no TensorFlow), runs a predictor
on each image in ascending id order (the reference takes the first 5000 val
ids so), writes its results as COCO results JSON and scores them with
COCOeval: class-agnostic proposals (`ProposalGenerator`) by AR
(coco_proposals.py), class-aware detections (`InstanceSegmenter`,
`class_aware = True`) by AP with categories plus the same AR
(coco_instances.py), so every family is compared on one table.
Files written to `out_dir`: proposals_segm.json, proposals_bbox.json and
proposal_metrics.json.
"""

import collections
import contextlib
import io
import os
import time
from typing import Optional

from pycocotools.coco import COCO
from tqdm import tqdm

from deepmask_jax.evaluation.coco_instances import (evaluate_instances,
                                                    report_instances)
from deepmask_jax.evaluation.coco_proposals import evaluate_proposals, report
from deepmask_jax.evaluation.results_json import (bbox_results,
                                                  proposal_category_id,
                                                  segm_results, write_results)
from deepmask_jax.inference.api import read_image

SEGM_FILE = 'proposals_segm.json'
BBOX_FILE = 'proposals_bbox.json'
METRICS_FILE = 'proposal_metrics.json'


def evaluate_per_image(generator, json_path: str, image_dir: str,
                       out_dir: str, max_images: Optional[int] = None,
                       verbose: bool = True) -> dict:
  """Proposals for a COCO split and their AR.

  Args:
    generator: a `ProposalGenerator` or `InstanceSegmenter` (inference/).
    json_path: COCO instances JSON of the split.
    image_dir: folder of its images.
    out_dir: where the results and metrics JSON go.
    max_images: evaluate only the first this many image ids (ascending).
    verbose: show a progress bar, print the table.
  Returns:
    The `evaluate_proposals` figures plus 'failed_images' (file names that
    could not be read: they stay in the evaluation with no proposals),
    'compilations' and 'seconds_per_image'.
  """
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(json_path)
  image_ids = sorted(coco.getImgIds())
  if max_images is not None:
    image_ids = image_ids[:max_images]
  if not image_ids:
    raise ValueError(f'{json_path} lists no images')
  category_id = proposal_category_id(coco)
  segm, bbox, failed = [], [], []
  start = time.perf_counter()
  evaluated = collections.deque()  # Ids handed to the stream, in order.

  def images():
    for image_id in image_ids:
      info = coco.loadImgs(image_id)[0]
      try:
        image = read_image(os.path.join(image_dir, info['file_name']))
      except OSError as error:
        print(f'cannot read {info["file_name"]}: {error}; it is evaluated '
              'with no proposals')
        failed.append(info['file_name'])
        continue
      if image.shape[:2] != (info['height'], info['width']):
        raise ValueError(
            f'{info["file_name"]} is {image.shape[1]}x{image.shape[0]} but '
            f'the annotations say {info["width"]}x{info["height"]}')
      evaluated.append(image_id)
      yield image

  for proposals in tqdm(generator.stream(images()), desc='images',
                        total=len(image_ids), disable=not verbose):
    image_id = evaluated.popleft()
    categories = (category_id if proposals.category_ids is None
                  else proposals.category_ids)
    segm += segm_results(image_id, proposals.rles, proposals.scores,
                         categories)
    bbox += bbox_results(image_id, proposals.boxes, proposals.scores,
                         categories)
  seconds = time.perf_counter() - start
  write_results(os.path.join(out_dir, SEGM_FILE), segm)
  write_results(os.path.join(out_dir, BBOX_FILE), bbox)
  if generator.class_aware:
    figures, report_fn = (evaluate_instances(coco, segm, bbox, image_ids),
                          report_instances)
  else:
    figures, report_fn = evaluate_proposals(coco, segm, bbox, image_ids), report
  figures.update(failed_images=failed,
                 compilations=generator.compilations,
                 seconds_per_image=seconds / len(image_ids))
  report_fn(figures, os.path.join(out_dir, METRICS_FILE), verbose=verbose)
  return figures
