"""One validator for every path: each COCO json below carries one defect.

The training path reads a json with `coco_json.load_instances` (the TFDS
build calls it); evaluation reads it through `ground_truth.load_ground_truth`
inside `evaluate_per_image`. For every defect both paths must give the same
outcome: the record dropped and counted with the same words, or a DataError
naming the file and the record (or position) before any image is scored. The
evaluator is fed fixed proposals (no model), and a dropped record must not
change the AR.
"""

import dataclasses
import json
import math

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
import pytest

from deepmask_jax.data import coco_json
from deepmask_jax.errors import DataError
from deepmask_jax.evaluation import ground_truth as ground_truth_lib
from deepmask_jax.evaluation.per_image import evaluate_per_image
from deepmask_jax.evaluation.per_patch import split_coverage

HEIGHT, WIDTH = 40, 48
# (image id, x, y, w, h) of the base's objects: two per image.
RECTANGLES = ((1, 4, 4, 16, 12), (1, 24, 20, 20, 16), (2, 2, 6, 30, 24),
              (2, 30, 2, 12, 10))
JSON_NAME = 'instances_val.json'


def _polygon(x, y, w, h):
  return [[x, y, x + w, y, x + w, y + h, x, y + h]]


def _base() -> dict:
  annotations = [{'id': index + 1, 'image_id': image_id, 'category_id': 1 + index % 2,
                  'bbox': [x, y, w, h], 'area': float(w * h), 'iscrowd': 0,
                  'segmentation': _polygon(x, y, w, h)}
                 for index, (image_id, x, y, w, h) in enumerate(RECTANGLES)]
  return {'images': [{'id': i, 'file_name': f'{i}.jpg', 'height': HEIGHT, 'width': WIDTH}
                     for i in (1, 2)],
          'annotations': annotations,
          'categories': [{'id': 1, 'name': 'a'}, {'id': 2, 'name': 'b'}]}


def _extra(**fields) -> dict:
  """A good annotation (id 10, on image 1) with some fields replaced."""
  record = {'id': 10, 'image_id': 1, 'category_id': 1, 'bbox': [10, 10, 8, 8],
            'area': 64.0, 'iscrowd': 0, 'segmentation': _polygon(10, 10, 8, 8)}
  return record | fields


def _crowd_rle(size):
  mask = np.zeros((HEIGHT, WIDTH), np.uint8)
  mask[:10, :10] = 1
  counts = mask_utils.encode(np.asfortranarray(mask))['counts'].decode('ascii')
  return {'size': size, 'counts': counts}


def _added(record):
  return lambda data: data['annotations'].append(record)


def _set(section, index, **fields):
  return lambda data: data[section][index].update(fields)


@dataclasses.dataclass
class Dropped:
  """The defect is dropped: reason -> item, and the summary's headline."""
  items: dict
  headline: str


@dataclasses.dataclass
class Fails:
  """The json is refused: the exact one-line message."""
  message: str


DROPPED_CASES = {
    'orphan annotation': (_added(_extra(image_id=99)), Dropped(
        {coco_json.UNKNOWN_IMAGE: 'annotation 10 (image 99)'}, '1 annotation dropped')),
    'unknown category': (_added(_extra(category_id=77)), Dropped(
        {coco_json.UNKNOWN_CATEGORY: 'annotation 10 (category 77)'},
        '1 annotation dropped')),
    'odd-length polygon': (_added(_extra(segmentation=[[10, 10, 18, 10, 18]])), Dropped(
        {coco_json.NO_VALID_POLYGON: 'annotation 10 (5 coordinates)'},
        '1 annotation dropped')),
    'two-point polygon': (_added(_extra(segmentation=[[10, 10, 18, 18]])), Dropped(
        {coco_json.NO_VALID_POLYGON: 'annotation 10 (2 points)'},
        '1 annotation dropped')),
    'zero-area box': (_added(_extra(bbox=[10, 10, 0, 8])), Dropped(
        {coco_json.BAD_BOX: 'annotation 10 (w=0, h=8)'}, '1 annotation dropped')),
    'box outside the image': (_added(_extra(bbox=[60, 10, 8, 8])), Dropped(
        {coco_json.BOX_OUTSIDE_IMAGE: 'annotation 10 (bbox [60, 10, 8, 8], image 48x40)'},
        '1 annotation dropped')),
    'NaN bbox': (_added(_extra(bbox=[10, math.nan, 8, 8])), Dropped(
        {coco_json.NOT_FINITE: 'annotation 10 (bbox [10, nan, 8, 8])'},
        '1 annotation dropped')),
    'infinite area': (_added(_extra(area=math.inf)), Dropped(
        {coco_json.NOT_FINITE: 'annotation 10 (area inf)'}, '1 annotation dropped')),
    'NaN polygon coordinate': (
        _added(_extra(segmentation=[[10, 10, 18, 10, math.nan, 18]])), Dropped(
            {coco_json.NOT_FINITE: 'annotation 10 (segmentation)'}, '1 annotation dropped')),
    'crowd RLE size swapped': (
        _added(_extra(iscrowd=1, segmentation=_crowd_rle([WIDTH, HEIGHT]))), Dropped(
            {coco_json.BAD_RLE_SIZE: 'annotation 10 (size [48, 40], image [height, width] '
                                     '[40, 48]: height and width swapped)'},
            '1 annotation dropped')),
    'crowd RLE of another size': (
        _added(_extra(iscrowd=1, segmentation=_crowd_rle([HEIGHT, WIDTH + 2]))), Dropped(
            {coco_json.BAD_RLE_SIZE: 'annotation 10 (size [40, 50], image [height, width] '
                                     '[40, 48])'},
            '1 annotation dropped')),
    'RLE counts short of the image': (
        _added(_extra(iscrowd=1, segmentation={'size': [HEIGHT, WIDTH], 'counts': [5, 5]})),
        Dropped({coco_json.BAD_RLE_COUNTS: 'annotation 10 (counts sum to 10, image has '
                                           '1920 pixels)'}, '1 annotation dropped')),
    'duplicate annotation id': (_added(_extra(id=1)), Dropped(
        {coco_json.DUPLICATE_ANNOTATION: 'annotation 1'}, '1 annotation dropped')),
}

FAILING_CASES = {
    'duplicate image id': (
        lambda data: data['images'].append(dict(data['images'][0], file_name='x.jpg')),
        Fails(f"{JSON_NAME}: images[2] (id 1): duplicate image id: 'x.jpg' has the id "
              "of '1.jpg'")),
    'string image id': (_set('images', 1, id='2'), Fails(
        f"{JSON_NAME}: images[1] (id '2'): 'id' has the wrong type (int expected): '2'")),
    'boolean annotation id': (_added(_extra(id=True)), Fails(
        f"{JSON_NAME}: annotations[4] (id True): 'id' has the wrong type (int expected): "
        'True')),
    'NaN image id of an annotation': (_added(_extra(image_id=math.nan)), Fails(
        f"{JSON_NAME}: annotations[4] (id 10): 'image_id' has the wrong type "
        '(int expected): nan')),
    'string in bbox': (_added(_extra(bbox=[10, '10', 8, 8])), Fails(
        f"{JSON_NAME}: annotations[4] (id 10): 'bbox' has the wrong type (bbox expected): "
        "[10, '10', 8, 8]")),
    'boolean in polygon': (_added(_extra(segmentation=[[10, 10, 18, True, 18, 18]])), Fails(
        f"{JSON_NAME}: annotations[4] (id 10): 'segmentation' has the wrong type "
        '(segmentation expected): [[10, 10, 18, True, 18, 18]]')),
    'string area': (_added(_extra(area='64')), Fails(
        f"{JSON_NAME}: annotations[4] (id 10): 'area' has the wrong type "
        "(number expected): '64'")),
    'string RLE size': (
        _added(_extra(iscrowd=1, segmentation=_crowd_rle(['40', '48']))), Fails(
            f"{JSON_NAME}: annotations[4] (id 10): 'segmentation' has the wrong type "
            "(segmentation expected): {'size': ['40', '48'], 'counts': '")),
    'NaN in RLE counts': (
        _added(_extra(iscrowd=1, segmentation={'size': [HEIGHT, WIDTH],
                                               'counts': [5, math.nan]})), Fails(
            f"{JSON_NAME}: annotations[4] (id 10): 'segmentation' has the wrong type "
            "(segmentation expected): {'size': [40, 48], 'counts': [5, nan]}")),
    'missing segmentation': (
        lambda data: data['annotations'][2].pop('segmentation'),
        Fails(f"{JSON_NAME}: annotations[2] (id 3): 'segmentation' missing")),
    'missing annotations key': (lambda data: data.pop('annotations'),
                                Fails(f"{JSON_NAME}: 'annotations' missing")),
    'no annotations': (lambda data: data['annotations'].clear(),
                       Fails(f"{JSON_NAME}: no annotations ('annotations' is empty)")),
    'images not a list': (lambda data: data.update(images={'id': 1}),
                          Fails(f"{JSON_NAME}: 'images' must be a list, got dict")),
    'no annotation usable': (
        lambda data: [a.update(category_id=9) for a in data['annotations']],
        Fails(f'{JSON_NAME}: none of its 4 annotations is usable (4 annotations dropped; '
              f'first: {coco_json.UNKNOWN_CATEGORY}: annotation 1 (category 9))')),
}


class FixedProposals:
  """A generator stand-in: per image, its objects' boxes shifted by 3 px.

  Images are recognised by their fill value (image id * 40).
  """
  class_aware = False
  categories = ({'id': 1, 'name': 'object'},)
  compilations = {}

  def __init__(self):
    self.calls = 0

  def propose_encoded(self, images):
    self.calls += 1
    image_id = int(round(images[0][0, 0, 0] / 40))
    boxes = np.array([[x + 3, y + 2, w, h] for i, x, y, w, h in RECTANGLES
                      if i == image_id], np.float64)
    masks = np.zeros((HEIGHT, WIDTH, len(boxes)), np.uint8, order='F')
    for k, (x, y, w, h) in enumerate(boxes.astype(int)):
      masks[y:y + h, x:x + w, k] = 1
    scores = np.linspace(1, 0.5, len(boxes))
    return [type('Proposals', (), dict(rles=mask_utils.encode(masks), boxes=boxes,
                                       scores=scores, category_ids=None))]

  def stream(self, images):
    for image in images:
      yield self.propose_encoded([image])[0]


@pytest.fixture(scope='module')
def image_dir(tmp_path_factory):
  folder = tmp_path_factory.mktemp('images')
  for image_id in (1, 2):
    Image.new('RGB', (WIDTH, HEIGHT), (40 * image_id,) * 3).save(folder / f'{image_id}.jpg')
  return folder


def _write(tmp_path, defect=None, text=None):
  data = _base()
  if defect is not None:
    defect(data)
  path = tmp_path / JSON_NAME
  path.write_text(text if text is not None else json.dumps(data))
  return str(path)


def _evaluate(json_path, image_dir, tmp_path, generator=None):
  ground_truth = ground_truth_lib.load_ground_truth(json_path, str(image_dir), verbose=False)
  return evaluate_per_image(generator or FixedProposals(), ground_truth,
                            str(tmp_path / 'eval'), verbose=False)


@pytest.fixture(scope='module')
def clean_figures(image_dir, tmp_path_factory):
  tmp_path = tmp_path_factory.mktemp('clean')
  return _evaluate(_write(tmp_path), image_dir, tmp_path)


@pytest.mark.parametrize('name', list(DROPPED_CASES))
def test_droppable_defect_is_dropped_alike_in_training_and_evaluation(
    name, image_dir, tmp_path, clean_figures):
  defect, expected = DROPPED_CASES[name]
  json_path = _write(tmp_path, defect)
  _, _, train_report = coco_json.load_instances(json_path, str(image_dir))
  figures = _evaluate(json_path, image_dir, tmp_path)
  for report in (train_report.as_dict(), figures['ground_truth']):
    assert report['items'] == {reason: [item] for reason, item in expected.items.items()}
    assert report['summary'] == expected.headline
  assert train_report.summary().startswith(f'{JSON_NAME}: {expected.headline}:')
  # What is scored is what the checks kept: the figures do not move.
  for iou_type in ('segm', 'bbox'):
    assert figures[iou_type] == clean_figures[iou_type]
  assert figures['objects_scored'] == clean_figures['objects_scored'] == len(RECTANGLES)


@pytest.mark.parametrize('name', list(FAILING_CASES))
def test_unusable_json_fails_alike_before_any_image_is_scored(name, image_dir, tmp_path):
  defect, expected = FAILING_CASES[name]
  json_path = _write(tmp_path, defect)
  with pytest.raises(DataError) as train_error:
    coco_json.load_instances(json_path, str(image_dir))
  generator = FixedProposals()
  with pytest.raises(DataError) as eval_error:
    _evaluate(json_path, image_dir, tmp_path, generator)
  assert str(train_error.value) == str(eval_error.value)
  assert str(eval_error.value).startswith(expected.message)
  assert '\n' not in str(eval_error.value)
  assert generator.calls == 0


def test_truncated_json_names_the_file_and_the_position(image_dir, tmp_path):
  text = json.dumps(_base())  # One line.
  cut = len(text) - 1  # The closing brace is lost: the error is at the end.
  json_path = _write(tmp_path, text=text[:cut])
  generator = FixedProposals()
  with pytest.raises(DataError) as error:
    _evaluate(json_path, image_dir, tmp_path, generator)
  assert str(error.value).startswith(
      f'{JSON_NAME}: invalid JSON at line 1 column {cut + 1} (character {cut}): ')
  assert generator.calls == 0


def test_missing_json_is_a_data_error(image_dir, tmp_path):
  with pytest.raises(DataError, match='no_such.json: file not found'):
    _evaluate(str(tmp_path / 'no_such.json'), image_dir, tmp_path)


def test_ground_truth_scores_one_against_itself_through_the_checks(image_dir, tmp_path):
  """The checked COCO object is a working ground truth: exact proposals score 1."""
  class Exact(FixedProposals):
    def propose_encoded(self, images):
      proposals = super().propose_encoded(images)[0]
      proposals.boxes = proposals.boxes - [3, 2, 0, 0]
      masks = np.zeros((HEIGHT, WIDTH, len(proposals.boxes)), np.uint8, order='F')
      for k, (x, y, w, h) in enumerate(proposals.boxes.astype(int)):
        masks[y:y + h, x:x + w, k] = 1
      proposals.rles = mask_utils.encode(masks)
      return [proposals]

  figures = _evaluate(_write(tmp_path), image_dir, tmp_path, Exact())
  assert figures['segm']['AR@10'] == pytest.approx(1.0)
  assert figures['bbox']['AR@10'] == pytest.approx(1.0)


def test_clean_figures_are_neither_zero_nor_one(clean_figures):
  """The shifted proposals make an AR that a changed ground truth would move."""
  assert 0.1 < clean_figures['segm']['AR@10'] < 0.9
  assert clean_figures['ground_truth']['summary'] == 'all records valid'


def test_unreadable_image_is_left_out_and_named(image_dir, tmp_path, clean_figures):
  def missing_second(data):
    data['images'][1]['file_name'] = 'gone.jpg'
  figures = _evaluate(_write(tmp_path, missing_second), image_dir, tmp_path)
  assert figures['images_scored'] == figures['num_images'] == 1
  assert figures['images_left_out'] == {coco_json.MISSING_FILE: ['gone.jpg']}
  assert figures['objects_scored'] == 2  # Image 1's objects only.
  line = ground_truth_lib.coverage_line(figures)
  assert line.startswith('scored 1 image, 2 objects; left out: image skipped: '
                         'file missing: gone.jpg')


def test_no_readable_image_fails(tmp_path):
  with pytest.raises(DataError, match=r'none of its 2 images could be read \(2 images '
                                      r'skipped; first: 1.jpg\)'):
    _evaluate(_write(tmp_path), tmp_path / 'empty_folder', tmp_path)


def test_per_patch_coverage_names_images_the_build_left_out(image_dir, tmp_path):
  def unreadable_second(data):
    data['images'][1]['file_name'] = 'broken.jpg'
  (tmp_path / 'images').mkdir()
  for name in ('1.jpg', '2.jpg'):
    (tmp_path / 'images' / name).write_bytes((image_dir / name).read_bytes())
  (tmp_path / 'images' / 'broken.jpg').write_bytes(b'not an image')
  truth = ground_truth_lib.load_ground_truth(
      _write(tmp_path, unreadable_second), str(tmp_path / 'images'), verbose=False)
  figures = split_coverage(truth, np.array([1]))
  assert figures['images_scored'] == 1 and figures['objects_scored'] == 2
  assert list(figures['images_left_out']) == [coco_json.UNREADABLE_FILE]
  assert figures['images_left_out'][coco_json.UNREADABLE_FILE][0].startswith('broken.jpg')
  assert 'images_not_in_tfds' not in figures
  # An image that reads fine but is missing from the split is named as such.
  stale = split_coverage(ground_truth_lib.load_ground_truth(
      _write(tmp_path), str(image_dir), verbose=False), np.array([1]))
  assert stale['images_not_in_tfds'] == ['2.jpg'] and not stale['images_left_out']


def test_evaluation_prints_what_it_scored_and_dropped(image_dir, tmp_path, capsys):
  json_path = _write(tmp_path, DROPPED_CASES['NaN bbox'][0])
  evaluate_per_image(FixedProposals(), ground_truth_lib.load_ground_truth(json_path, str(image_dir)),
                     str(tmp_path / 'eval'), verbose=True)
  out = capsys.readouterr().out
  assert f'{JSON_NAME}: 1 annotation dropped:' in out
  assert 'annotation 10 (bbox [10, nan, 8, 8])' in out
  assert ('scored 2 images, 4 objects; left out: nothing; ground truth: '
          '1 annotation dropped') in out


def test_the_coverage_line_counts_crowd_regions_in_the_plural():
  figures = {'images_scored': 3, 'objects_scored': 7, 'crowd_regions': 5,
             'images_left_out': {}, 'ground_truth': {'summary': 'all records valid'}}
  assert ground_truth_lib.coverage_line(figures).startswith(
      'scored 3 images, 7 objects (5 crowd regions ignored); left out: nothing')


def test_skipped_line_counts_the_images_left_out_with_a_few_names():
  missing = [f'{i}.jpg' for i in range(5)]
  line = ground_truth_lib.skipped_line({'images_left_out': {
      coco_json.MISSING_FILE: missing,
      coco_json.SIZE_MISMATCH: ['big.jpg (file 9x9, json 8x8)']}})
  assert line.startswith('6 images skipped, not scored: file missing: '
                         '0.jpg, 1.jpg, 2.jpg, ...; file size differs')
  assert 'big.jpg' in line and '3.jpg' not in line
  assert ground_truth_lib.skipped_line({'images_left_out': {}}) == ''
