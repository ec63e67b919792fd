"""Per-image evaluation of tiny models on coco_tiny val and tiny splits."""

import json
import os

import pytest

from deepmask_jax.data import coco_json
from deepmask_jax.data.coco_report import LoadReport
from deepmask_jax.evaluation.ground_truth import load_ground_truth
from deepmask_jax.evaluation.per_image import (BBOX_FILE, METRICS_FILE,
                                               SEGM_FILE, evaluate_per_image,
                                               read_scored_image)
from deepmask_jax.families import get_family
from deepmask_jax.families.deepmask.generator import ProposalGenerator
from deepmask_jax.families.embedmask.segmenter import InstanceSegmenter
from tests.evaluation.conftest import write_tiny_split
from tests.families.embedmask.test_family import tiny_embedmask_config
from tests.conftest import tiny_model


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
  generator = ProposalGenerator(model, variables, config, results_per_image=20)
  figures = evaluate_per_image(
      generator, load_ground_truth(str(json_path), str(coco_tiny / 'val2017'),
                                   verbose=False), str(out), verbose=False)
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
      ProposalGenerator(model, variables, config, results_per_image=5),
      load_ground_truth(
          str(coco_tiny / 'annotations' / 'instances_val2017.json'),
          str(coco_tiny / 'val2017'), verbose=False),
      str(tmp_path), max_images=1, verbose=False)
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


@pytest.fixture(scope='module')
def tiny_segmenter():
  """A random tiny EmbedMask of categories (1, 'a'), (2, 'b'), (5, 'c'),
  finding something on any image (score threshold 0)."""
  config = tiny_embedmask_config()
  family = get_family('embedmask')
  model = family.build_model(config)
  return InstanceSegmenter(model, family.init_variables(config, model),
                           config, score_threshold=0.0,
                           results_per_image=5)


def evaluate_on(tmp_path, segmenter, categories, missing=()):
  json_path, image_dir = write_tiny_split(tmp_path / 'data', categories,
                                          missing)
  figures = evaluate_per_image(segmenter, load_ground_truth(json_path, image_dir),
                               str(tmp_path / 'eval'))
  with open(tmp_path / 'eval' / SEGM_FILE) as f:
    written = {r['category_id'] for r in json.load(f)}
  return figures, written


def test_model_of_the_dataset_categories_scores_ap_in_silence(
    tmp_path, tiny_segmenter, capsys):
  figures, written = evaluate_on(tmp_path, tiny_segmenter,
                                 [(1, 'a'), (2, 'b'), (5, 'c')])
  assert figures['categories']['outcome'] == 'same'
  assert 'AP' in figures['segm'] and 'ap_not_computed' not in figures
  assert written and written <= {1, 2, 5}
  out = capsys.readouterr().out
  assert 'matched by name' not in out and 'categories differ' not in out


def test_same_names_under_other_ids_are_scored_with_the_dataset_ids(
    tmp_path, tiny_segmenter, capsys):
  figures, written = evaluate_on(tmp_path, tiny_segmenter,
                                 [(7, 'c'), (3, 'a'), (4, 'b')])
  assert figures['categories']['outcome'] == 'by_name'
  assert 'AP' in figures['segm']
  assert written and written <= {3, 4, 7}
  lines = [l for l in capsys.readouterr().out.splitlines()
           if 'matched by name' in l]
  assert len(lines) == 1 and "'c' 5 -> 7" in lines[0]


def test_other_categories_give_agnostic_ar_and_say_why_ap_is_missing(
    tmp_path, tiny_segmenter, capsys):
  figures, written = evaluate_on(tmp_path, tiny_segmenter,
                                 [(1, 'person'), (2, 'bicycle'), (5, 'c')])
  assert figures['categories']['outcome'] == 'different'
  for iou_type in ('segm', 'bbox'):
    assert 'AP' not in figures[iou_type]
    assert 0.0 <= figures[iou_type]['AR@100'] <= 1.0
  assert 'categories differ' in figures['ap_not_computed']
  # Scored as proposals: one category of the dataset, claiming no class.
  assert written == {1}
  with open(tmp_path / 'eval' / METRICS_FILE) as f:
    assert json.load(f)['ap_not_computed'] == figures['ap_not_computed']
  out = capsys.readouterr().out
  assert out.count('categories differ') == 1
  assert "2 categor" in out and "'person', 'bicycle'" in out


def test_skipped_images_are_counted_in_one_line_and_on_the_bar(
    tmp_path, tiny_segmenter, capsys):
  figures, _ = evaluate_on(tmp_path, tiny_segmenter,
                           [(1, 'a'), (2, 'b'), (5, 'c')],
                           missing=('gone.png',))
  assert figures['images_scored'] == 2
  out, err = capsys.readouterr()
  assert '1 image skipped, not scored: file missing: gone.png' in out
  assert '3/3' in err  # The progress bar counts the skipped image too.
