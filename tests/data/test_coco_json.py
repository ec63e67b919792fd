"""coco_json: json validation, bad-record handling, masks."""

import json
import subprocess
import sys

import numpy as np
from pycocotools import coco as coco_api
import pytest

from deepmask_jax.data import coco_json
from deepmask_jax.data import coco_masks
from deepmask_jax.errors import DataError
from tests.data import fixtures


def _load_broken(broken_coco):
  return coco_json.load_instances(str(broken_coco.train_json), str(broken_coco.train_images))


def _objects_by_id(images):
  return {obj.id: obj for image in images for obj in image.objects}


def _write_json(tmp_path, data, name='instances_val.json'):
  path = tmp_path / name
  path.write_text(data if isinstance(data, str) else json.dumps(data))
  return str(path)


def _minimal(annotation):
  return {'images': [{'id': 1, 'file_name': 'a.jpg', 'height': 10, 'width': 10}],
          'annotations': [annotation], 'categories': [{'id': 1, 'name': 'x'}]}


def test_coco_tiny_matches_pycocotools(coco_tiny):
  json_path = coco_tiny / 'annotations' / 'instances_val2017.json'
  images, categories, report = coco_json.load_instances(str(json_path),
                                                        str(coco_tiny / 'val2017'))
  reference = coco_api.COCO(str(json_path))
  assert len(images) == len(reference.getImgIds())
  assert sum(len(image.objects) for image in images) == len(reference.getAnnIds())
  assert [c['id'] for c in categories] == sorted(reference.getCatIds())
  assert not report.counts, report.summary()


def test_labels_are_contiguous_by_sorted_category_id(coco_tiny):
  images, categories, _ = coco_json.load_instances(
      str(coco_tiny / 'annotations' / 'instances_val2017.json'), str(coco_tiny / 'val2017'))
  label_of = {c['id']: i for i, c in enumerate(categories)}
  objects = [obj for image in images for obj in image.objects]
  assert all(obj.label == label_of[obj.category_id] for obj in objects)
  assert max(obj.label for obj in objects) == len(categories) - 1


def test_rasterize_equals_ann_to_mask(coco_tiny):
  json_path = coco_tiny / 'annotations' / 'instances_val2017.json'
  reference = coco_api.COCO(str(json_path))
  images, _, _ = coco_json.load_instances(str(json_path), str(coco_tiny / 'val2017'))
  crowd_seen = False
  for image in images[:20]:
    for obj in image.objects:
      expected = reference.annToMask(reference.anns[obj.id])
      np.testing.assert_array_equal(
          coco_masks.rasterize(obj.segmentation, image.height, image.width), expected)
      crowd_seen |= obj.iscrowd
  assert crowd_seen, 'expected a crowd (RLE) annotation among the first 20 images'


def test_syntax_error_names_file_line_and_column(tmp_path):
  path = _write_json(tmp_path, '{"images": [\n  {"id": 1,,}\n]}')
  with pytest.raises(ValueError, match=r'instances_val.json: invalid JSON at line 2 column'):
    coco_json.load_instances(path, str(tmp_path))


def test_missing_key_names_the_record(tmp_path):
  good = {'id': 122, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 5, 5],
          'segmentation': [[0, 0, 5, 0, 5, 5]]}
  data = _minimal(good)
  data['annotations'].append({k: v for k, v in good.items() if k != 'bbox'} | {'id': 123})
  path = _write_json(tmp_path, data)
  with pytest.raises(ValueError) as error:
    coco_json.load_instances(path, str(tmp_path))
  assert str(error.value) == "instances_val.json: annotations[1] (id 123): 'bbox' missing"


def test_ill_typed_key_names_the_record(tmp_path):
  path = _write_json(tmp_path, _minimal({'id': 5, 'image_id': 1, 'category_id': 1,
                                         'bbox': 'wide', 'segmentation': []}))
  with pytest.raises(ValueError, match=r"annotations\[0\] \(id 5\): 'bbox' has the wrong type"):
    coco_json.load_instances(path, str(tmp_path))


def test_missing_image_key_names_the_record(tmp_path):
  data = _minimal({})
  del data['images'][0]['height']
  with pytest.raises(ValueError, match=r"images\[0\] \(id 1\): 'height' missing"):
    coco_json.load_instances(_write_json(tmp_path, data), str(tmp_path))


def test_two_point_polygon_part_is_dropped(broken_coco):
  images, _, report = _load_broken(broken_coco)
  objects = _objects_by_id(images)
  assert objects[broken_coco.two_point_part_dropped].segmentation == [fixtures.SQUARE]
  assert broken_coco.two_point_only not in objects
  # Annotation 2 keeps a part; annotation 3's only part goes with it (one drop).
  assert report.items[coco_json.POLYGON_TOO_FEW_POINTS] == [
      f'annotation {broken_coco.two_point_part_dropped} (2 points)']
  assert report.items[coco_json.NO_VALID_POLYGON] == [
      f'annotation {broken_coco.two_point_only} (2 points)']


def test_zero_area_and_negative_boxes_are_skipped(broken_coco):
  images, _, report = _load_broken(broken_coco)
  objects = _objects_by_id(images)
  assert broken_coco.zero_area_box not in objects
  assert broken_coco.negative_box not in objects
  assert report.counts[coco_json.BAD_BOX] == 2


def test_unknown_image_and_category_are_skipped(broken_coco):
  images, _, report = _load_broken(broken_coco)
  objects = _objects_by_id(images)
  assert broken_coco.unknown_image not in objects
  assert broken_coco.unknown_category not in objects
  assert report.items[coco_json.UNKNOWN_IMAGE] == [
      f'annotation {broken_coco.unknown_image} (image 999)']
  assert report.items[coco_json.UNKNOWN_CATEGORY] == [
      f'annotation {broken_coco.unknown_category} (category 77)']


def test_rle_segmentations_are_kept(broken_coco):
  images, _, _ = _load_broken(broken_coco)
  objects = _objects_by_id(images)
  crowd = objects[broken_coco.crowd_uncompressed_rle]
  compressed = objects[broken_coco.compressed_rle]
  assert crowd.iscrowd and not compressed.iscrowd
  np.testing.assert_array_equal(
      coco_masks.rasterize(crowd.segmentation, fixtures.HEIGHT, fixtures.WIDTH),
      coco_masks.rasterize(compressed.segmentation, fixtures.HEIGHT, fixtures.WIDTH))


def test_empty_images_kept_and_unused_categories_reported(broken_coco):
  images, categories, report = _load_broken(broken_coco)
  empty = [image for image in images if image.file_name == broken_coco.empty_file]
  assert len(empty) == 1 and not empty[0].objects
  assert report.items[coco_json.IMAGE_WITHOUT_OBJECTS] == [broken_coco.empty_file]
  assert report.items[coco_json.CATEGORY_WITHOUT_OBJECTS] == ['unused (id 2)']
  assert len(categories) == 2


def test_summary_lists_every_reason_with_examples(broken_coco):
  _, _, report = _load_broken(broken_coco)
  summary = report.summary()
  for reason in report.counts:
    assert reason in summary
  assert f'annotation {broken_coco.zero_area_box}' in summary
  assert summary.startswith('instances_train.json: ')


def test_imports_without_tensorflow():
  code = ('import sys, deepmask_jax.data.coco_json, deepmask_jax.data.synthetic; '
          'sys.exit("tensorflow" in sys.modules)')
  assert subprocess.run([sys.executable, '-c', code], check=False).returncode == 0


def test_one_dropped_annotation_is_reported_as_one(tmp_path):
  """The only annotation of an image is dropped: 1 annotation dropped (the
  image left without objects is a note, not a second drop)."""
  data = _minimal({'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 5, 5],
                   'segmentation': [[0, 0, 5, 0, 5, 5]]})
  data['images'].append({'id': 2, 'file_name': 'b.jpg', 'height': 10, 'width': 10})
  data['annotations'].append({'id': 2, 'image_id': 2, 'category_id': 1,
                              'bbox': [0, 0, 0, 5], 'segmentation': [[0, 0, 5, 0, 5, 5]]})
  _, _, report = coco_json.load_instances(_write_json(tmp_path, data), str(tmp_path))
  assert report.headline() == '1 annotation dropped, 1 image without objects kept'
  assert report.lost('annotation') == 1 and report.lost('image') == 0
  assert report.summary().splitlines()[0] == (
      'instances_val.json: 1 annotation dropped, 1 image without objects kept:')


@pytest.mark.parametrize('part, reason, detail', [
    ([0, 0, 5, 0, 5], coco_json.POLYGON_ODD_COORDINATES, '5 coordinates'),
    ([0, 0, 5, 5], coco_json.POLYGON_TOO_FEW_POINTS, '2 points')])
def test_odd_coordinate_count_is_not_called_too_few_points(tmp_path, part, reason, detail):
  data = _minimal({'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 5, 5],
                   'segmentation': [part, [0, 0, 5, 0, 5, 5]]})
  _, _, report = coco_json.load_instances(_write_json(tmp_path, data), str(tmp_path))
  assert dict(report.items) == {reason: [f'annotation 1 ({detail})']}
  assert report.headline() == '1 polygon part dropped'


def test_nan_bbox_is_dropped_and_named(tmp_path):
  data = _minimal({'id': 7, 'image_id': 1, 'category_id': 1, 'bbox': [0, float('nan'), 5, 5],
                   'segmentation': [[0, 0, 5, 0, 5, 5]]})
  data['annotations'].append({'id': 8, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 5, 5],
                              'segmentation': [[0, 0, 5, 0, 5, 5]]})
  images, _, report = coco_json.load_instances(_write_json(tmp_path, data), str(tmp_path))
  assert [obj.id for obj in images[0].objects] == [8]
  assert report.items[coco_json.NOT_FINITE] == ['annotation 7 (bbox [0, nan, 5, 5])']


def test_malformed_json_is_a_data_error(tmp_path):
  with pytest.raises(DataError, match=r"instances_val.json: top level must be an object"):
    coco_json.load_instances(_write_json(tmp_path, '[1, 2]'), str(tmp_path))


def test_an_only_odd_length_polygon_is_one_drop_on_one_line(tmp_path):
  data = _minimal({'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 5, 5],
                   'segmentation': [[0, 0, 5, 0, 5]]})
  data['annotations'].append({'id': 2, 'image_id': 1, 'category_id': 1,
                              'bbox': [0, 0, 5, 5], 'segmentation': [[0, 0, 5, 0, 5, 5]]})
  _, _, report = coco_json.load_instances(_write_json(tmp_path, data), str(tmp_path))
  assert dict(report.items) == {coco_json.NO_VALID_POLYGON: ['annotation 1 (5 coordinates)']}
  assert report.headline() == '1 annotation dropped'
  assert len(report.summary().splitlines()) == 2  # The headline and one reason.


def test_a_string_image_id_is_shown_quoted(tmp_path):
  data = _minimal({'id': 1, 'image_id': '360461', 'category_id': 1, 'bbox': [0, 0, 5, 5],
                   'segmentation': [[0, 0, 5, 0, 5, 5]]})
  with pytest.raises(DataError, match=r"'image_id' has the wrong type \(int expected\): "
                                      r"'360461'$"):
    coco_json.load_instances(_write_json(tmp_path, data), str(tmp_path))


def test_a_duplicate_image_id_names_both_files(tmp_path):
  data = _minimal({'id': 1, 'image_id': 1, 'category_id': 1, 'bbox': [0, 0, 5, 5],
                   'segmentation': [[0, 0, 5, 0, 5, 5]]})
  data['images'].append(dict(data['images'][0], file_name='b.jpg'))
  with pytest.raises(DataError) as error:
    coco_json.load_instances(_write_json(tmp_path, data), str(tmp_path))
  assert "duplicate image id: 'b.jpg' has the id of 'a.jpg'" in str(error.value)
