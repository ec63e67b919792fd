"""detection_pipeline: EmbedMask full-image batches through the real TFDS builder."""

import dataclasses
import itertools

import numpy as np
import pytest
import tensorflow as tf

from deepmask_jax import config_schema
from deepmask_jax.data import records
from deepmask_jax.data import tfds_coco
from deepmask_jax.data.object_index import ObjectIndex
from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.families.embedmask import pipeline as detection_pipeline
from deepmask_jax.families.embedmask import sampler as detection_sampler
from deepmask_jax.families.embedmask.geometry import DetectionGeometry
from tests.data import fixtures

BATCH, CAP = 2, 8


def _small_config(data_config, **detection):
  config = config_schema.get_config()
  config.data = data_config
  config.batch_size = BATCH
  config.data.prefetch = 1
  config.detection.update({'min_size': 128, 'max_size': 192,
                           'max_instances': CAP, **detection})
  return config


@pytest.fixture
def config(synthetic_data_config, synthetic_builder):
  del synthetic_builder  # Built once per session; prepare() reuses it.
  return _small_config(synthetic_data_config)


@pytest.fixture(scope='module')
def first_batches(synthetic_root, tfds_root, synthetic_builder):
  """Steps 0..2 of the small synthetic config, from one fresh iterator."""
  del synthetic_builder
  config = _small_config(fixtures.synthetic_config(synthetic_root, tfds_root))
  return _take(detection_pipeline.train_batches(config), 3)


def _take(batches, count, start=0):
  return list(itertools.islice(batches, start, start + count))


def _assert_batches_equal(first, second):
  assert first.keys() == second.keys()
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def _sampler(config, builder):
  images = detection_sampler.TrainingImages(
      records.load_object_index(builder, 'train'),
      DetectionGeometry.from_config(config.detection))
  return detection_sampler.DetectionSampler(images, config.seed, config.batch_size)


def test_resize_rule_and_canvases_follow_maskrcnn_benchmark():
  geometry = DetectionGeometry(min_size=800, max_size=1333)
  assert geometry.resized_size(427, 640) == (800, 1199)
  assert geometry.resized_size(640, 480) == (1066, 800)
  assert geometry.resized_size(800, 900) == (800, 900)  # Already the size.
  # The longer side would pass 1333: the shorter is round(1333 * 100 / 1000).
  assert geometry.resized_size(100, 1000) == (133, 1330)
  assert geometry.canvas_shapes() == [(800, 1344), (1344, 800)]
  config = config_schema.get_config()
  assert _geometry(config).canvas_shapes() == [(800, 1344), (1344, 800)]
  assert geometry.canvas_of(427, 640) == (800, 1344)
  assert geometry.canvas_of(640, 480) == (1344, 800)


def test_keys_shapes_and_dtypes(config, first_batches):
  (height, width), _ = _geometry(config).canvas_shapes()
  num_locations = len(fcos_geometry.locations(height, width)[0])
  expected = {
      'image': ((BATCH, height, width, 3), np.float32),
      'image_hw': ((BATCH, 2), np.int32), 'image_id': ((BATCH,), np.int64),
      'boxes': ((BATCH, CAP, 4), np.float32), 'classes': ((BATCH, CAP), np.int32),
      'valid': ((BATCH, CAP), bool),
      'masks': ((BATCH, CAP, height // 4, width // 4), np.uint8),
      'mask_points': ((BATCH, CAP, num_locations), bool),
  }
  for batch in first_batches:
    assert {k: (v.shape, v.dtype) for k, v in batch.items()} == expected
    # Synthetic images are 96 px squares: landscape, resized to 128 x 128.
    assert (batch['image_hw'] == 128).all()
    assert (batch['image'][:, :, 128:] == 0).all()  # Padding after normalising.
    assert batch['valid'][:, 0].all()
    assert not batch['masks'][~batch['valid']].any()
    assert not batch['mask_points'][~batch['valid']].any()
    assert batch['masks'][batch['valid']].reshape(-1, height * width // 16).any(1).all()


def test_batch_t_is_deterministic_and_resumes_exactly(config, first_batches):
  resumed = _take(detection_pipeline.train_batches(config, start_step=1), 2)
  for expected, got in zip(first_batches[1:], resumed):
    _assert_batches_equal(expected, got)
  assert not np.array_equal(first_batches[0]['image_id'],
                            first_batches[1]['image_id'])


def test_process_slices_concatenate_to_the_global_batch(config, first_batches):
  whole = first_batches[1:2]
  parts = [_take(detection_pipeline.train_batches(
      config, start_step=1, process_index=p, process_count=2), 1) for p in range(2)]
  for step, batch in enumerate(whole):
    joined = {k: np.concatenate([parts[0][step][k], parts[1][step][k]])
              for k in batch}
    _assert_batches_equal(batch, joined)
  assert parts[0][0]['image'].shape[0] == BATCH // 2


def _decoded_record(builder, image_index):
  """The record as numpy, JPEG and PNGs decoded by TF (as the pipeline does)."""
  example = records.RecordReader(builder, 'train').read(
      tf.constant(image_index, tf.int64))
  objects = {key: value.numpy() for key, value in example['objects'].items()}
  objects['mask'] = np.stack([tf.io.decode_png(png, channels=1).numpy()
                              for png in objects['mask']])
  return {'image/id': example['image/id'].numpy(), 'objects': objects,
          'image': tf.io.decode_jpeg(example['image'], channels=3).numpy()}


def test_boxes_masks_and_points_match_a_recomputation(config, synthetic_builder,
                                                     first_batches):
  sampler = _sampler(config, synthetic_builder)
  flips_seen = set()
  for step, batch in enumerate(first_batches):
    group, records, flips = sampler.step_images(step, 0, BATCH)
    assert (group, batch['image'].shape[1:3]) == (0, (128, 192))
    for j, (record, flip) in enumerate(zip(records, flips)):
      flips_seen.add(bool(flip))
      _check_sample(config, batch, j, _decoded_record(synthetic_builder, record),
                    bool(flip))
  assert flips_seen == {True, False}


def _check_sample(config, batch, j, example, flip):
  objects = example['objects']
  assert batch['image_id'][j] == example['image/id']
  height, width = example['image'].shape[:2]
  new_h, new_w = batch['image_hw'][j]
  # Boxes: TFDS [x, y, w, h] -> xyxy (+1 convention), scaled, flipped.
  x, y, w, h = objects['bbox'].T
  boxes = np.stack([x * new_w / width, y * new_h / height,
                    (x + w - 1) * new_w / width, (y + h - 1) * new_h / height], -1)
  if flip:
    boxes = np.stack([new_w - 1 - boxes[:, 2], boxes[:, 1],
                      new_w - 1 - boxes[:, 0], boxes[:, 3]], -1)
  count = len(boxes)  # Synthetic: at most 6 objects, none crowd.
  assert batch['valid'][j].sum() == count
  np.testing.assert_allclose(batch['boxes'][j, :count], boxes, rtol=1e-5, atol=1e-4)
  np.testing.assert_array_equal(batch['classes'][j, :count], objects['label'])
  # Image: resized like PIL, flipped, BGR, normalised, zero padded.
  image = tf.image.resize(example['image'], (new_h, new_w), antialias=True).numpy()
  image = np.clip(np.round(image), 0, 255)[:, ::-1 if flip else 1, ::-1]
  image = (image - np.array(config.detection.pixel_mean)) / np.array(
      config.detection.pixel_std)
  np.testing.assert_allclose(batch['image'][j, :new_h, :new_w], image, atol=1e-3)
  # One object's targets, from its decoded full-image mask.
  slot = int(np.argmax(objects['area']))
  mask = tf.image.resize(objects['mask'][slot].astype(np.float32), (new_h, new_w))
  mask = (mask.numpy()[..., 0] >= 0.5)[:, ::-1 if flip else 1]
  canvas_h, canvas_w = batch['image'].shape[1:3]
  xy, _, _ = fcos_geometry.locations(canvas_h, canvas_w)
  reach = int(xy.max()) + 1  # P6/P7 locations may lie past the canvas.
  padded = np.zeros((reach, reach), np.float32)
  padded[:new_h, :new_w] = mask
  target = tf.image.resize(padded[:canvas_h, :canvas_w, None], (canvas_h // 4, canvas_w // 4),
                           method='bilinear', antialias=False).numpy()[..., 0] > 0
  np.testing.assert_array_equal(batch['masks'][j, slot], target)
  points = padded[xy[:, 1].astype(int), xy[:, 0].astype(int)] > 0
  np.testing.assert_array_equal(batch['mask_points'][j, slot], points)
  assert points.any() and target.any()


def test_group_draws_follow_group_sizes_and_cover_each_epoch():
  # 30 landscape and 10 portrait images with one object each.
  sizes = np.array([[40, 60]] * 30 + [[60, 40]] * 10, np.int32)
  index = ObjectIndex(
      image_id=np.arange(40, dtype=np.int64), image_size=sizes,
      first_object=np.arange(41, dtype=np.int64),
      object_slot=np.zeros(40, np.int32), label=np.zeros(40, np.int32),
      bbox=np.tile(np.float32([2, 2, 10, 10]), (40, 1)),
      area=np.full(40, 100, np.float32), iscrowd=np.zeros(40, bool))
  images = detection_sampler.TrainingImages(
      index, DetectionGeometry(64, 96, 4))
  sampler = detection_sampler.DetectionSampler(images, seed=3, global_batch=5)
  steps = range(2100)  # Crosses two chunks of group draws.
  draws = [sampler.group_and_turn(t) for t in steps]
  groups = np.array([g for g, _ in draws])
  for t, (group, turn) in enumerate(draws):
    assert turn == (groups[:t] == group).sum()
  assert abs((groups == 0).mean() - 0.75) < 0.03
  seen = {0: [], 1: []}
  for t in steps[:100]:
    group, records, _ = sampler.step_images(t, 0, 5)
    seen[group].extend(records)
    assert (images.group[records] == group).all()
  # The first 30 (10) images a group serves are all its images.
  assert sorted(seen[0][:30]) == list(range(30))
  assert sorted(seen[1][:10]) == list(range(30, 40))


def test_cap_keeps_the_largest_objects_and_names_the_images(
    synthetic_data_config, synthetic_builder, capsys):
  config = _small_config(synthetic_data_config, max_instances=2)
  index = records.load_object_index(synthetic_builder, 'train')
  batches = detection_pipeline.train_batches(config)
  report = capsys.readouterr().out
  counts = np.diff(index.first_object)
  crowded = np.flatnonzero(counts > 2)
  assert len(crowded)
  assert f'{int((counts - 2).clip(0).sum())} objects dropped beyond max_instances=2' in report
  assert f'image id {index.image_id[crowded[0]]} ({counts[crowded[0]] - 2})' in report
  sampler = _sampler(config, synthetic_builder)
  for step, batch in enumerate(_take(batches, 4)):
    _, rows, _ = sampler.step_images(step, 0, BATCH)
    for j, record in enumerate(rows):
      areas = index.area[index.first_object[record]:index.first_object[record + 1]]
      kept = np.sort(np.argsort(-areas, kind='stable')[:2])
      assert batch['valid'][j].sum() == len(kept)
      np.testing.assert_array_equal(
          batch['classes'][j, :len(kept)],
          index.label[index.first_object[record] + kept])


def test_crowds_and_images_without_objects_are_left_out(broken_data_config,
                                                       tmp_path, capsys):
  # Its own TFDS folder: test_tfds_coco checks what the first build prints.
  broken_data_config.tfds_dir = str(tmp_path)
  config = _small_config(broken_data_config)
  batches = detection_pipeline.train_batches(config)
  report = capsys.readouterr().out
  index = records.load_object_index(tfds_coco.prepare(config.data), 'train')
  object_image = index.object_image
  with_target = np.unique(object_image[~index.iscrowd])
  untrained = index.num_images - len(with_target)
  assert index.iscrowd.any() and untrained >= 1
  assert f'{untrained} of {index.num_images} images have no non-crowd object' in report
  assert f'{int(index.iscrowd.sum())} crowd objects' in report
  crowd_ids = set(index.image_id[object_image[index.iscrowd]])
  served = set()
  for batch in _take(batches, 6):
    served.update(batch['image_id'])
    for j in np.flatnonzero(np.isin(batch['image_id'], list(crowd_ids))):
      record = int(np.flatnonzero(index.image_id == batch['image_id'][j])[0])
      rows = slice(index.first_object[record], index.first_object[record + 1])
      assert batch['valid'][j].sum() == (~index.iscrowd[rows]).sum()
  assert served <= set(index.image_id[with_target])


def test_no_trainable_image_fails_naming_the_dataset(config, monkeypatch):
  real = records.load_object_index

  def all_crowd(builder, split):
    return dataclasses.replace(real(builder, split),
                               iscrowd=np.ones_like(real(builder, split).iscrowd))
  monkeypatch.setattr(records, 'load_object_index', all_crowd)
  with pytest.raises(ValueError, match="dataset 'synthetic' .*nothing to train"):
    detection_pipeline.train_batches(config)


def test_coco_tiny_at_full_size_uses_both_canvases(coco_tiny_data_config, coco_tiny_builder):
  config = _small_config(coco_tiny_data_config, min_size=800, max_size=1333,
                         max_instances=100)
  sampler = _sampler(config, coco_tiny_builder)
  groups = [sampler.group_and_turn(t)[0] for t in range(20)]
  last = max(groups.index(0), groups.index(1))  # Both groups by then.
  batches = _take(detection_pipeline.train_batches(config), last + 1)
  for step in (groups.index(0), groups.index(1)):
    batch = batches[step]
    canvas = _geometry(config).canvas_shapes()[groups[step]]
    assert batch['image'].shape[1:3] == canvas
    _, records, _ = sampler.step_images(step, 0, BATCH)
    hw = sampler.images.index.image_size[records]
    expected = [_geometry(config).resized_size(h, w) for h, w in hw]
    np.testing.assert_array_equal(batch['image_hw'], expected)


def _geometry(config):
  return DetectionGeometry.from_config(config.detection)
