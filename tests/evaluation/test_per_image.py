"""Per-image evaluation of a tiny model on coco_tiny val."""

import json
import os

from deepmask_jax.data import coco_json
from deepmask_jax.data.coco_report import LoadReport
from deepmask_jax.evaluation.per_image import (BBOX_FILE, METRICS_FILE,
                                               SEGM_FILE, evaluate_per_image,
                                               read_scored_image)
from deepmask_jax.inference.api import ProposalGenerator
from tests.inference.conftest import tiny_model


def test_per_image_writes_results_and_leaves_out_unreadable_images(
    coco_tiny, tmp_path):
  with open(coco_tiny / 'annotations' / 'instances_val2017.json') as f:
    dataset = json.load(f)
  images = sorted(dataset['images'], key=lambda i: i['id'])[:3]
  images[2] = dict(images[2], file_name='missing.jpg')  # Unreadable.
  dataset['images'] = images
  ids = {i['id'] for i in images}
  dataset['annotations'] = [a for a in dataset['annotations']
                            if a['image_id'] in ids]
  json_path = tmp_path / 'val3.json'
  with open(json_path, 'w') as f:
    json.dump(dataset, f)

  model, variables, config = tiny_model('deepmask')
  out = tmp_path / 'eval'
  generator = ProposalGenerator(model, variables, config, num_proposals=20)
  figures = evaluate_per_image(generator, str(json_path),
                               str(coco_tiny / 'val2017'), str(out),
                               verbose=False)
  # The missing image is left out of the scoring, named with its reason.
  assert figures['num_images'] == figures['images_scored'] == 2
  assert figures['images_left_out'] == {coco_json.MISSING_FILE: ['missing.jpg']}
  scored_ids = sorted(i['id'] for i in images[:2])
  assert figures['objects_scored'] + figures['crowd_regions'] == sum(
      a['image_id'] in scored_ids for a in dataset['annotations'])
  assert figures['num_proposals']['segm'] == 2 * 20
  for iou_type in ('segm', 'bbox'):
    for value in figures[iou_type].values():
      assert value == -1 or 0.0 <= value <= 1.0
  assert figures['compilations']['network'] >= 1
  for name in (SEGM_FILE, BBOX_FILE, METRICS_FILE):
    assert os.path.getsize(out / name) > 0
  with open(out / METRICS_FILE) as f:
    assert json.load(f)['num_images'] == 2


def test_max_images_takes_the_first_ids(coco_tiny, tmp_path):
  model, variables, config = tiny_model('deepmask')
  figures = evaluate_per_image(
      ProposalGenerator(model, variables, config, num_proposals=5),
      str(coco_tiny / 'annotations' / 'instances_val2017.json'),
      str(coco_tiny / 'val2017'), str(tmp_path), max_images=1, verbose=False)
  assert figures['num_images'] == 1
  with open(tmp_path / SEGM_FILE) as f:
    results = json.load(f)
  with open(coco_tiny / 'annotations' / 'instances_val2017.json') as f:
    first = min(i['id'] for i in json.load(f)['images'])
  assert {r['image_id'] for r in results} == {first}


def test_a_zero_byte_image_is_left_out_as_an_empty_file(tmp_path):
  (tmp_path / 'empty.jpg').write_bytes(b'')
  left_out = LoadReport()
  record = coco_json.ImageRecord(1, 'empty.jpg', str(tmp_path / 'empty.jpg'), 8, 8)
  assert read_scored_image(record, left_out) is None
  assert left_out.items[coco_json.UNREADABLE_FILE] == ['empty.jpg (empty file (0 bytes))']
