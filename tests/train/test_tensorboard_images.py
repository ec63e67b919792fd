"""Each validation writes the family's prediction overlays to TensorBoard."""

import glob
import io
import os

import numpy as np
from PIL import Image
import pytest

from deepmask_jax.families.embedmask.random_batches import detection_batches
from deepmask_jax.families import get_family
from deepmask_jax.families.embedmask.family import ValidationSplit
from deepmask_jax.train.trainer import train_and_evaluate
from tests.conftest import tiny_config
from tests.evaluation.conftest import write_tiny_split
from tests.families.embedmask.test_family import tiny_embedmask_config
from tests.train import fake_batches


def tensorboard_images(workdir) -> dict:
  """{(tag, step): [H, W, 3] uint8} of the image summaries in workdir."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  found = {}
  for path in glob.glob(os.path.join(workdir, 'tensorboard', 'events.*')):
    for event in tf.compat.v1.train.summary_iterator(path):
      for value in event.summary.value:
        if value.metadata.plugin_data.plugin_name == 'images':
          png = value.tensor.string_val[2]  # width, height, then the PNG.
          found[value.tag, event.step] = np.asarray(Image.open(io.BytesIO(png)))
  return found


def run(family_name, config, workdir, split_root, **sources):
  json_path, image_dir = write_tiny_split(split_root, [(1, 'a'), (2, 'b'),
                                                       (5, 'c')])
  if family_name == 'embedmask':
    sources['eval_source'] = lambda c: ValidationSplit(json_path, image_dir, 2)
  else:  # DeepMask validates on patches; its images come from config.data.
    config.data.root = os.path.dirname(json_path)
    config.data.val_json, config.data.val_images = 'val.json', 'images'
  train_and_evaluate(config, workdir, get_family(family_name), **sources)
  return tensorboard_images(workdir)


@pytest.mark.parametrize('family_name', ['deepmask', 'embedmask'])
def test_validation_writes_prediction_images(tmp_path, family_name):
  if family_name == 'embedmask':
    config = tiny_embedmask_config(**{
        'schedule.total_steps': 2, 'eval_every_steps': 1, 'tensorboard_images': 1})
    sources = {'train_source': detection_batches}
  else:
    config = tiny_config(**{
        'patch.object_window': 64, 'patch.label_size': 32, 'batch_size': 8,
        'schedule.total_steps': 2, 'eval_every_steps': 1,
        'validation_images': 8, 'tensorboard_images': 1})
    sources = {'train_source': fake_batches.patch_batches,
               'eval_source': fake_batches.eval_batches}
  images = run(family_name, config, str(tmp_path / 'run'),
               tmp_path / 'split', **sources)
  name = get_family(family_name).validation_name
  assert sorted(images) == [(f'{name}/predictions/first', 1),
                            (f'{name}/predictions/first', 2)]
  assert images[f'{name}/predictions/first', 2].shape == (64, 64, 3)


def test_zero_tensorboard_images_writes_none(tmp_path):
  config = tiny_config(**{
      'patch.object_window': 64, 'patch.label_size': 32, 'batch_size': 8,
      'schedule.total_steps': 1, 'validation_images': 8,
      'tensorboard_images': 0})
  images = run('deepmask', config, str(tmp_path / 'run'), tmp_path / 'split',
               train_source=fake_batches.patch_batches,
               eval_source=fake_batches.eval_batches)
  assert not images
