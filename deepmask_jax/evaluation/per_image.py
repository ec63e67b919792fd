"""Per-image evaluation on a COCO-format split (evalPerImage + AR, or AP).

Reads the split with data/coco_json.py and PIL (no TensorFlow), runs a predictor
on each image in ascending id order (the reference takes the first 5000 val
ids so), writes its results as COCO results JSON and scores them with
COCOeval: class-agnostic proposals (`ProposalGenerator`) by AR
(coco_proposals.py), class-aware detections (`InstanceSegmenter`,
`class_aware = True`) by AP with categories plus the same AR
(coco_instances.py), so every family is compared on one table. A class-aware
model's categories are checked against the split's first (categories.py):
matched by name when only their ids differ; AR only, no AP, when they differ.
The ground truth is checked first (ground_truth.py, the training data's
rules); images that cannot be read are left out of the scoring and named.
Files written to `out_dir`: proposals_segm.json, proposals_bbox.json and
proposal_metrics.json.

With several processes (`--multihost`), each proposes for every n-th image,
the results of all processes are gathered, and every process scores the whole
split; only process 0 writes the files.
"""

import collections
import json
import os
import time
from typing import Optional

import jax
from jax.experimental import multihost_utils
import numpy as np
from tqdm import tqdm

from deepmask_jax.data import coco_images
from deepmask_jax.data import coco_json
from deepmask_jax.data.coco_report import LoadReport
from deepmask_jax.errors import DataError
from deepmask_jax.evaluation.categories import check_categories
from deepmask_jax.evaluation.coco_instances import (evaluate_instances,
                                                    report_instances)
from deepmask_jax.evaluation.coco_proposals import evaluate_proposals, report
from deepmask_jax.evaluation.ground_truth import (GroundTruth, coverage,
                                                  skipped_line)
from deepmask_jax.evaluation.results_json import (proposal_category_id,
                                                  proposal_results,
                                                  write_results)
from deepmask_jax.inference.images import read_image

SEGM_FILE = 'proposals_segm.json'
BBOX_FILE = 'proposals_bbox.json'
METRICS_FILE = 'proposal_metrics.json'


def read_scored_image(record: coco_json.ImageRecord,
                      left_out: LoadReport) -> Optional[np.ndarray]:
  """[H, W, 3] uint8 RGB of an image to score, or None (named in `left_out`).

  Missing files, unreadable files and files of another size than the json
  says are left out with the training data's reasons (coco_images.read_image).
  """
  try:
    image = read_image(record.path)
  except FileNotFoundError:
    left_out.add(coco_json.MISSING_FILE, record.file_name)
    return None
  except (OSError, EOFError, SyntaxError, ValueError) as error:
    left_out.add(coco_json.UNREADABLE_FILE, f'{record.file_name} '
                 f'({coco_images.image_error(error, path=record.path)})')
    return None
  if image.shape[:2] != (record.height, record.width):
    left_out.add(coco_json.SIZE_MISMATCH,
                 f'{record.file_name} (file {image.shape[1]}x{image.shape[0]}, '
                 f'json {record.width}x{record.height})')
    return None
  return image


def _readable_images(ground_truth: GroundTruth, image_ids, left_out: LoadReport,
                     handed_out: collections.deque, progress: tqdm):
  """Yields the [H, W, 3] uint8 images of `image_ids` that can be read,
  appending each id to `handed_out`; the others are named in `left_out` and
  counted on `progress` at once (so that it reaches its total)."""
  for image_id in image_ids:
    image = read_scored_image(ground_truth.image(image_id), left_out)
    if image is None:
      progress.update(1)
    else:
      handed_out.append(image_id)
      yield image


def gather_from_processes(records) -> list:
  """[process 0's records, process 1's, ...] of JSON-serialisable `records`."""
  if jax.process_count() == 1:
    return [records]
  data = np.frombuffer(json.dumps(records).encode(), np.uint8)
  sizes = multihost_utils.process_allgather(np.int64(data.size))
  padded = np.zeros(int(sizes.max()), np.uint8)
  padded[:data.size] = data
  rows = multihost_utils.process_allgather(padded)
  return [json.loads(row[:size].tobytes()) for row, size in zip(rows, sizes)]


def _from_every_process(segm: list, bbox: list, scored: list,
                        left_out: LoadReport):
  """(segm, bbox, scored ids, left_out) of all processes, as one process
  would have them."""
  parts = gather_from_processes(
      [segm, bbox, scored, {r: left_out.items[r] for r in left_out.counts}])
  every_left_out = LoadReport()
  for part in parts:
    for reason, names in part[3].items():
      for name in names:
        every_left_out.add(reason, name)
  return (_merged(p[0] for p in parts), _merged(p[1] for p in parts),
          sorted(i for part in parts for i in part[2]), every_left_out)


def _merged(parts: list) -> list:
  """One results list from the processes', in image id order as one process."""
  return sorted((r for part in parts for r in part), key=lambda r: r['image_id'])


def evaluate_per_image(generator, ground_truth: GroundTruth, out_dir: str,
                       max_images: Optional[int] = None,
                       verbose: bool = True) -> dict:
  """Proposals for a COCO split and their AR (and AP for class-aware models).

  Args:
    generator: an inference.predictor.Predictor (e.g. ProposalGenerator,
      InstanceSegmenter).
    ground_truth: the split, checked and indexed by load_ground_truth before
      any image is read (it holds the images' folder).
    out_dir: where the results and metrics JSON go.
    max_images: evaluate only the first this many image ids (ascending).
    verbose: show a progress bar, print the table.
  Returns:
    The `evaluate_proposals` (or `evaluate_instances`) figures on the images
    scored, 'categories' (categories.CategoryCheck.as_dict; and
    'ap_not_computed', why, when a class-aware model's categories differ),
    the `ground_truth.coverage` figures (images and objects scored, images
    left out: unreadable images are not scored, and why; what the json
    checks dropped), 'compilations' and 'seconds_per_image' (of this process).
  Raises:
    DataError: the split lists no image, or no image could be read.
  """
  coco = ground_truth.coco
  image_ids = sorted(coco.getImgIds())
  if max_images is not None:
    image_ids = image_ids[:max_images]
  if not image_ids:
    raise DataError(f'{ground_truth.json_path} lists no images')
  category_id = proposal_category_id(coco)
  segm, bbox, scored, left_out = [], [], [], LoadReport()
  primary = jax.process_index() == 0
  verbose = verbose and primary
  categories = check_categories(
      generator.categories, coco.dataset['categories'], generator.class_aware,
      os.path.basename(ground_truth.json_path))
  if verbose and categories.line:
    print(categories.line, flush=True)
  local_ids = image_ids[jax.process_index()::jax.process_count()]
  start = time.perf_counter()
  handed_out = collections.deque()  # Ids given to the stream, in order.
  progress = tqdm(desc='images', total=len(local_ids), disable=not verbose)
  images = _readable_images(ground_truth, local_ids, left_out, handed_out,
                            progress)
  for proposals in generator.stream(images):
    image_id = handed_out.popleft()
    scored.append(image_id)
    image_segm, image_bbox = proposal_results(
        image_id, categories.relabel(proposals), category_id)
    segm += image_segm
    bbox += image_bbox
    progress.update(1)
  progress.close()
  seconds = time.perf_counter() - start
  segm, bbox, scored, left_out = _from_every_process(segm, bbox, scored,
                                                    left_out)
  if not scored:
    raise DataError(f'{ground_truth.json_path}: none of its {len(image_ids)} '
                    f'images could be read ({left_out.headline()}; first: '
                    f'{next(iter(left_out.items.values()))[0]})')
  if primary:
    write_results(os.path.join(out_dir, SEGM_FILE), segm)
    write_results(os.path.join(out_dir, BBOX_FILE), bbox)
  if categories.class_aware:
    figures, report_fn = (evaluate_instances(coco, segm, bbox, scored),
                          report_instances)
  else:
    figures, report_fn = evaluate_proposals(coco, segm, bbox, scored), report
  figures.update(coverage(ground_truth, scored, left_out),
                 categories=categories.as_dict(),
                 compilations=generator.compilations,
                 seconds_per_image=seconds / max(len(local_ids), 1))
  if generator.class_aware and not categories.class_aware:
    figures['ap_not_computed'] = categories.line
  if verbose and (skipped := skipped_line(figures)):
    print(skipped, flush=True)
  report_fn(figures, os.path.join(out_dir, METRICS_FILE) if primary else None,
            verbose=verbose)
  return figures
