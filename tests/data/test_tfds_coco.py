"""tfds_coco: building COCO-format data as array_record TFDS, and reading it back."""

import json
import os

import numpy as np
from pycocotools import coco as coco_api
import pytest
import tensorflow as tf
import tensorflow_datasets as tfds

from deepmask_jax.data import coco_json
from deepmask_jax.data import synthetic
from deepmask_jax.data import tfds_coco
from tests.data import fixtures
from deepmask_jax.errors import DataError


def _examples(builder, split):
  """All examples of a split as numpy, read as the sampler reads them.

  (TFDS has no `as_dataset` reader for array_record: records are read by index.)
  """
  source = builder.as_data_source(split, deserialize_method=tfds_coco.RAW_BYTES)
  features = builder.info.features
  return [tf.nest.map_structure(lambda t: t.numpy(), features.deserialize_example(raw))
          for raw in source]


def test_example_counts_match_the_json(coco_tiny, coco_tiny_builder):
  for split in ('train', 'val'):
    coco = coco_api.COCO(str(coco_tiny / f'annotations/instances_{split}2017.json'))
    examples = _examples(coco_tiny_builder, split)
    assert coco_tiny_builder.info.splits[split].num_examples == len(coco.imgs)
    assert len(examples) == len(coco.imgs)
    assert sum(len(e['objects']['id']) for e in examples) == len(coco.anns)


def test_objects_equal_pycocotools_annotations(coco_tiny, coco_tiny_builder):
  coco = coco_api.COCO(str(coco_tiny / 'annotations/instances_val2017.json'))
  label_of = {cid: i for i, cid in enumerate(sorted(coco.getCatIds()))}
  for example in _examples(coco_tiny_builder, 'val')[:6]:
    image_info = coco.imgs[int(example['image/id'])]
    assert example['image/filename'].decode() == image_info['file_name']
    assert example['image'].shape == (image_info['height'], image_info['width'], 3)
    objects = example['objects']
    for slot, ann_id in enumerate(objects['id']):
      ann = coco.anns[int(ann_id)]
      np.testing.assert_array_equal(objects['mask'][slot, ..., 0], coco.annToMask(ann))
      np.testing.assert_allclose(objects['bbox'][slot], ann['bbox'], rtol=1e-6)
      assert objects['category_id'][slot] == ann['category_id']
      assert objects['label'][slot] == label_of[ann['category_id']]
      assert objects['iscrowd'][slot] == bool(ann['iscrowd'])
      assert objects['area'][slot] == pytest.approx(ann['area'], rel=1e-6)


def test_raw_bytes_source_deserializes_in_a_tf_graph(coco_tiny_builder):
  features = coco_tiny_builder.info.features
  source = coco_tiny_builder.as_data_source('val', deserialize_method=tfds_coco.RAW_BYTES)
  assert isinstance(source[0], bytes)
  indices = [len(source) - 1, 0, 7]
  dataset = tf.data.Dataset.from_tensor_slices(indices).map(
      lambda i: tf.numpy_function(lambda j: source[int(j)], [i], tf.string, stateful=False))
  dataset = dataset.map(features.deserialize_example)  # Traced: runs as a graph.
  decoded = list(tfds.as_numpy(dataset))
  eager = [features.deserialize_example(source[i]) for i in indices]
  for graph_example, eager_example in zip(decoded, eager):
    assert graph_example['image/id'] == eager_example['image/id'].numpy()
    np.testing.assert_array_equal(graph_example['objects']['mask'],
                                  eager_example['objects']['mask'].numpy())
  assert set(np.unique(decoded[0]['objects']['mask'])) <= {0, 1}


def test_categories_survive_reloading(coco_tiny, coco_tiny_builder, coco_tiny_data_config):
  coco = coco_api.COCO(str(coco_tiny / 'annotations/instances_train2017.json'))
  reloaded = tfds_coco.prepare(coco_tiny_data_config)
  expected = [{'id': c['id'], 'name': c['name']} for c in sorted(coco.loadCats(coco.getCatIds()),
                                                                 key=lambda c: c['id'])]
  assert tfds_coco.categories(reloaded) == expected
  assert reloaded.data_dir == coco_tiny_builder.data_dir


def test_prepare_reuses_a_built_dataset(coco_tiny_builder, coco_tiny_data_config):
  files = sorted(os.listdir(coco_tiny_builder.data_dir))
  mtimes = [os.stat(os.path.join(coco_tiny_builder.data_dir, f)).st_mtime_ns for f in files]
  tfds_coco.prepare(coco_tiny_data_config)
  assert [os.stat(os.path.join(coco_tiny_builder.data_dir, f)).st_mtime_ns
          for f in files] == mtimes


def test_missing_dataset_explains_layout_and_download(tmp_path):
  with pytest.raises(DataError) as error:
    tfds_coco.prepare(fixtures.data_config(tmp_path / 'nowhere', ''))
  message = str(error.value)
  assert '\n' not in message
  for expected in ('missing ' + str(tmp_path / 'nowhere'),
                   'nowhere/annotations/instances_train2017.json',
                   'nowhere/train2017/*.jpg', 'cocodataset.org',
                   '--config.data.root', '--config.data.synthetic=True'):
    assert expected in message


def test_missing_image_folder_is_named(coco_tiny_data_config, tmp_path):
  coco_tiny_data_config.val_images = 'no_such_folder'
  coco_tiny_data_config.name = 'coco_tiny_without_val_images'
  coco_tiny_data_config.tfds_dir = str(tmp_path)
  with pytest.raises(DataError, match='no_such_folder'):
    tfds_coco.prepare(coco_tiny_data_config)


def test_bad_inputs_are_skipped_converted_and_reported(broken_coco, broken_data_config, capfd):
  builder = tfds_coco.prepare(broken_data_config)
  printed = capfd.readouterr().out
  examples = _examples(builder, 'train')
  names = sorted(e['image/filename'].decode() for e in examples)
  assert names == sorted(broken_coco.kept_files)
  by_name = {e['image/filename'].decode(): e for e in examples}
  assert len(by_name[broken_coco.empty_file]['objects']['id']) == 0
  for name in broken_coco.converted_files + ('gray.jpg',):
    assert by_name[name]['image'].shape[-1] == 3
  good_ids = set(by_name['good.jpg']['objects']['id'].tolist())
  assert good_ids == {broken_coco.good_polygon, broken_coco.two_point_part_dropped,
                      broken_coco.crowd_uncompressed_rle, broken_coco.compressed_rle}
  for reason in (coco_json.UNREADABLE_FILE, coco_json.MISSING_FILE, coco_json.SIZE_MISMATCH,
                 coco_json.CONVERTED, coco_json.BAD_BOX, coco_json.NO_VALID_POLYGON,
                 coco_json.CATEGORY_WITHOUT_OBJECTS, coco_json.IMAGE_WITHOUT_OBJECTS):
    assert reason in printed
  assert broken_coco.missing_file in printed and 'truncated.jpg' in printed
  report = builder.load_reports['train']
  assert report.items[coco_json.MISSING_FILE] == [broken_coco.missing_file]
  assert report.counts[coco_json.UNREADABLE_FILE] == len(broken_coco.unreadable_files)


def test_datasets_with_different_names_do_not_collide(coco_tiny_builder, synthetic_builder):
  assert coco_tiny_builder.data_dir != synthetic_builder.data_dir
  assert os.path.dirname(os.path.dirname(coco_tiny_builder.data_dir)) == os.path.dirname(
      os.path.dirname(synthetic_builder.data_dir))  # Same tfds_dir, one builder.
  names = [c['name'] for c in tfds_coco.categories(synthetic_builder)]
  assert names == list(synthetic.CATEGORIES)
  assert len(tfds_coco.categories(coco_tiny_builder)) > len(names)


def test_prepare_generates_the_synthetic_dataset(tmp_path, synthetic_data_config):
  synthetic_data_config.root = str(tmp_path / 'synthetic')
  synthetic_data_config.tfds_dir = ''
  synthetic_data_config.synthetic_train_images = 4
  synthetic_data_config.synthetic_val_images = 2
  synthetic_data_config.synthetic_image_size = 48
  builder = tfds_coco.prepare(synthetic_data_config)
  assert builder.data_dir.startswith(str(tmp_path / 'synthetic' / 'tfds'))
  assert builder.info.splits['train'].num_examples == 4
  assert builder.info.splits['val'].num_examples == 2
  example = _examples(builder, 'val')[0]
  assert example['image'].shape == (48, 48, 3)
  assert example['objects']['mask'].shape[1:] == (48, 48, 1)


def _single_object_json(category_id, categories):
  return json.dumps({
      'images': [{'id': 1, 'file_name': 'good.jpg', 'height': fixtures.HEIGHT,
                  'width': fixtures.WIDTH}],
      'annotations': [{'id': 1, 'image_id': 1, 'category_id': category_id, 'iscrowd': 0,
                       'bbox': [10, 10, 20, 20], 'segmentation': [fixtures.SQUARE]}],
      'categories': [{'id': cid, 'name': f'c{cid}'} for cid in categories]})


def _one_image_dataset(broken_coco, root, name, train_categories=(1,),
                       val_categories=(1,)):
  """config.data of a dataset of one image (good.jpg) per split, one object each
  (of the last category listed), built under root/tfds."""
  (root / 'images').mkdir()
  (root / 'images' / 'good.jpg').write_bytes(
      (broken_coco.train_images / 'good.jpg').read_bytes())
  (root / 'train.json').write_text(_single_object_json(train_categories[-1],
                                                       train_categories))
  (root / 'val.json').write_text(_single_object_json(val_categories[-1], val_categories))
  return fixtures.data_config(root, '', name=name, train_json='train.json',
                              val_json='val.json', train_images='images',
                              val_images='images')


def test_labels_follow_the_union_of_both_splits_categories(broken_coco, tmp_path):
  builder = tfds_coco.prepare(_one_image_dataset(broken_coco, tmp_path, 'union',
                                                 [1, 3], [3, 5]))
  assert [c['id'] for c in tfds_coco.categories(builder)] == [1, 3, 5]
  assert _examples(builder, 'train')[0]['objects']['label'].tolist() == [1]
  assert _examples(builder, 'val')[0]['objects']['label'].tolist() == [2]


def test_a_build_prints_its_own_lines_apart_from_progress_bars(broken_coco, tmp_path,
                                                               capfd):
  builder = tfds_coco.prepare(_one_image_dataset(broken_coco, tmp_path, 'own_lines'))
  out, err = capfd.readouterr()
  assert 'Downloading' not in out + err and 'downloaded' not in out + err
  assert f"building the TFDS files of dataset 'own_lines' in {builder.data_dir}" in out
  lines = out.splitlines()
  for split in tfds_coco.SPLITS:  # Each report line is a whole line of its own.
    assert set(builder.load_reports[split].summary().splitlines()) <= set(lines)
  assert "dataset 'own_lines' built: 1 image in train, 1 image in val" in lines
  # Not a terminal: no progress bar redraws (carriage returns, cursor moves).
  assert '\r' not in out + err and '\x1b[' not in out + err


def test_an_interrupted_build_is_removed_and_named(broken_coco, tmp_path, capfd):
  data = _one_image_dataset(broken_coco, tmp_path, 'interrupted')
  # Where TFDS writes a build before renaming it: what a killed build leaves.
  left = os.path.join(os.path.dirname(tfds_coco.make_builder(data).data_dir),
                      'incomplete.K1LLED_1.0.0')
  os.makedirs(left)
  with open(os.path.join(left, 'deepmask_coco-train.array_record-00000-of-00001'),
            'wb') as f:
    f.write(bytes(2_500_000))
  builder = tfds_coco.prepare(data)
  assert not os.path.exists(left)
  out = capfd.readouterr().out
  assert f'removing {left} (2.5 MB), left by an interrupted TFDS build' in out.splitlines()
  assert builder.info.splits['train'].num_examples == 1
