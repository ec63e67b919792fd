"""input_pipeline: tf.data batches on coco_tiny, through the real TFDS builder."""

import itertools
import json
import os

import numpy as np
from pycocotools import mask as mask_utils
import pytest
from scipy import stats
import tensorflow as tf

from deepmask_jax import config_schema
from deepmask_jax.families.deepmask import input_pipeline
from deepmask_jax.families.deepmask import patch_ops
from deepmask_jax.families.deepmask import sampler as sampler_lib

BATCH = 8


@pytest.fixture
def config(coco_tiny_data_config):
  config = config_schema.get_config()
  config.data = coco_tiny_data_config
  config.batch_size = BATCH
  config.data.prefetch = 1
  return config


def _take(batches, count):
  return list(itertools.islice(batches, count))


def _assert_batches_equal(first, second):
  assert first.keys() == second.keys()
  for key in first:
    np.testing.assert_array_equal(first[key], second[key], err_msg=key)


def test_batches_have_the_trainer_layout(config):
  heads = set()
  for batch in _take(input_pipeline.train_batches(config), 6):
    assert batch['image'].shape == (BATCH, 192, 192, 3)
    assert batch['mask'].shape == (BATCH, 112, 112)
    assert batch['score'].shape == (BATCH,)
    assert all(batch[k].dtype == np.float32 for k in ('image', 'mask', 'score'))
    assert isinstance(batch['is_mask'], np.bool_)
    heads.add(bool(batch['is_mask']))
    if batch['is_mask']:
      assert set(np.unique(batch['mask'])) == {-1.0, 1.0}
      assert (batch['score'] == 1).all()
    else:
      assert (batch['mask'] == 0).all()
      assert set(np.unique(batch['score'])) <= {-1.0, 1.0}
    # Normalised: grey padding and real pixels, not [0, 1] values.
    assert batch['image'].min() < -0.5 and batch['image'].max() > 1.0
  assert heads == {True, False}


def test_heads_follow_the_stateless_draw(config):
  heads = [bool(b['is_mask']) for b in _take(input_pipeline.train_batches(config), 8)]
  assert heads == [sampler_lib.is_mask_step(config.seed, t, 0.5) for t in range(8)]


def test_sharpmask_labels_are_160_px_and_mask_only(config):
  config.patch.label_size = 160
  config.patch.hfreq = 0.0
  for batch in _take(input_pipeline.train_batches(config), 2):
    assert batch['is_mask'] and batch['mask'].shape == (BATCH, 160, 160)


def test_batch_t_is_the_same_on_every_call_and_on_resume(config):
  first = _take(input_pipeline.train_batches(config), 4)
  again = _take(input_pipeline.train_batches(config), 4)
  resumed = _take(input_pipeline.train_batches(config, start_step=2), 2)
  for expected, got in zip(first, again):
    _assert_batches_equal(expected, got)
  for expected, got in zip(first[2:], resumed):
    _assert_batches_equal(expected, got)
  assert not np.array_equal(first[0]['image'], first[1]['image'])


def test_process_slices_differ_and_concatenate_to_the_global_batch(config):
  whole = _take(input_pipeline.train_batches(config, process_index=0,
                                             process_count=1), 3)
  slices = [_take(input_pipeline.train_batches(config, process_index=p,
                                               process_count=2), 3)
            for p in range(2)]
  for step, global_batch in enumerate(whole):
    first, second = slices[0][step], slices[1][step]
    assert first['image'].shape == (BATCH // 2, 192, 192, 3)
    assert not np.array_equal(first['image'], second['image'])
    assert first['is_mask'] == second['is_mask'] == global_batch['is_mask']
    for key in ('image', 'mask', 'score'):
      np.testing.assert_array_equal(
          np.concatenate([first[key], second[key]]), global_batch[key])


def test_batch_size_must_divide_over_processes(config):
  with pytest.raises(ValueError, match='divisible'):
    input_pipeline.train_batches(config, process_index=0, process_count=3)


def test_flip_mirrors_image_and_label_together(config, coco_tiny_builder):
  config.patch.hfreq = 0.0
  flipped = _take(input_pipeline.train_batches(config), 2)
  config.patch.flip = False
  plain = _take(input_pipeline.train_batches(config), 2)
  index = input_pipeline.load_object_index(coco_tiny_builder, 'train')
  sampler = sampler_lib.PatchSampler(index, sampler_lib.PatchGeometry())
  mirrored = 0
  for step in range(2):
    flips = sampler.mask_specs(config.seed, step * BATCH + np.arange(BATCH)).flip
    for j, flip in enumerate(flips):
      turn = (lambda a: a[:, ::-1]) if flip else (lambda a: a)
      np.testing.assert_allclose(flipped[step]['image'][j],
                                 turn(plain[step]['image'][j]), atol=1e-5)
      np.testing.assert_array_equal(flipped[step]['mask'][j],
                                    turn(plain[step]['mask'][j]))
      mirrored += int(flip)
  assert 0 < mirrored < 2 * BATCH


def test_score_batches_are_half_positive(config):
  config.patch.hfreq = 1.0
  config.batch_size = 32
  scores = np.concatenate([b['score'] for b in
                           _take(input_pipeline.train_batches(config), 8)])
  positives = int((scores == 1).sum())
  assert stats.binomtest(positives, len(scores), 0.5).pvalue > 1e-3


def test_eval_batches_are_fixed_full_mask_batches(config):
  first = list(input_pipeline.eval_batches(config, num_batches=2))
  config.seed = 123  # Evaluation does not depend on the training seed.
  again = list(input_pipeline.eval_batches(config, num_batches=2))
  assert len(first) == 2
  for expected, got in zip(first, again):
    _assert_batches_equal(expected, got)
    assert got['is_mask'] and got['image'].shape[0] == BATCH
  config.validation_images = 2 * BATCH + 1  # Rounded up to whole batches.
  assert len(list(input_pipeline.eval_batches(config))) == 3


def test_object_index_matches_the_json_and_is_cached(coco_tiny, coco_tiny_builder):
  index = input_pipeline.load_object_index(coco_tiny_builder, 'train')
  cache = [f for f in os.listdir(coco_tiny_builder.data_dir) if f.endswith('.npz')]
  assert cache
  again = input_pipeline.load_object_index(coco_tiny_builder, 'train')
  np.testing.assert_array_equal(index.bbox, again.bbox)
  coco = json.loads((coco_tiny / 'annotations/instances_train2017.json').read_text())
  sizes = {im['id']: (im['height'], im['width']) for im in coco['images']}
  boxes = {}
  for ann in coco['annotations']:
    boxes.setdefault(ann['image_id'], []).append(ann['bbox'])
  assert index.num_images == len(coco['images'])
  for i, image_id in enumerate(index.image_id):
    assert tuple(index.image_size[i]) == sizes[image_id]
    rows = slice(index.first_object[i], index.first_object[i + 1])
    np.testing.assert_allclose(sorted(index.bbox[rows].tolist()),
                               sorted(boxes.get(image_id, [])), rtol=1e-6)


def _polygon_label(annotation, label_window, size):
  """The COCO polygon rasterised in the label's own pixel frame."""
  x0, y0, side = label_window
  scale = size / side
  polygons = [((np.reshape(p, (-1, 2)) - (x0, y0)) * scale).ravel().tolist()
              for p in annotation['segmentation']]
  rle = mask_utils.merge(mask_utils.frPyObjects(polygons, size, size))
  return mask_utils.decode(rle) > 0


def test_mask_labels_match_the_reprojected_polygons(coco_tiny, coco_tiny_builder):
  annotations = {a['id']: a for a in json.loads(
      (coco_tiny / 'annotations/instances_train2017.json').read_text())['annotations']}
  index = input_pipeline.load_object_index(coco_tiny_builder, 'train')
  sampler = sampler_lib.PatchSampler(index, sampler_lib.PatchGeometry())
  reader = input_pipeline.RecordReader(coco_tiny_builder, 'train')
  specs = sampler.mask_specs(seed=0, sample_ids=range(60))
  ious = []
  for image_index, slot, label_window in zip(specs.image_index, specs.object_slot,
                                             specs.label_window):
    example = reader.read(tf.constant(image_index))
    png = example['objects']['mask'][slot]
    label = patch_ops.patch_label(tf.io.decode_png(png, channels=1),
                                  tf.constant(label_window), 112).numpy() > 0
    expected = _polygon_label(annotations[int(example['objects']['id'][slot])],
                              label_window, 112)
    ious.append((label & expected).sum() / (label | expected).sum())
  # Masks stored at image resolution lose detail of thin or tiny objects once
  # enlarged, so single objects may fall lower; a shift or flip would not pass.
  assert np.mean(ious) > 0.95 and np.median(ious) > 0.95
  assert min(ious) > 0.75


def test_pipeline_labels_are_the_spec_labels(config, coco_tiny_builder):
  config.patch.hfreq = 0.0
  batch = next(input_pipeline.train_batches(config))
  index = input_pipeline.load_object_index(coco_tiny_builder, 'train')
  specs = sampler_lib.PatchSampler(index, sampler_lib.PatchGeometry()).mask_specs(
      config.seed, range(BATCH))
  reader = input_pipeline.RecordReader(coco_tiny_builder, 'train')
  for j in range(BATCH):
    example = reader.read(tf.constant(specs.image_index[j]))
    mask = tf.io.decode_png(example['objects']['mask'][specs.object_slot[j]], channels=1)
    label = patch_ops.patch_label(mask, tf.constant(specs.label_window[j]), 112).numpy()
    np.testing.assert_array_equal(batch['mask'][j],
                                  label[:, ::-1] if specs.flip[j] else label)


def test_small_synthetic_images_give_full_batches(synthetic_data_config, synthetic_builder):
  del synthetic_builder  # Built once per session; prepare() reuses it.
  config = config_schema.get_config()
  config.data = synthetic_data_config
  config.batch_size = BATCH
  batches = _take(input_pipeline.train_batches(config), 4)
  assert {bool(b['is_mask']) for b in batches} == {True, False}
  for batch in batches:
    assert batch['image'].shape == (BATCH, 192, 192, 3)
    assert np.isfinite(batch['image']).all()
    if batch['is_mask']:
      assert (batch['mask'] == 1).any(axis=(1, 2)).all()  # Every label has its object.
