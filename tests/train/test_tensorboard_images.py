"""Each validation writes the family's prediction overlays to TensorBoard."""

import functools
import glob
import io
import os

import numpy as np
from PIL import Image
import pytest

from deepmask_jax.families.embedmask.random_batches import detection_batches
from deepmask_jax.families import bind, get_family
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


def run(config, workdir, split_root):
  """Trains on random batches, validating on a tiny split; the images drawn."""
  json_path, image_dir = write_tiny_split(split_root, [(1, 'a'), (2, 'b'),
                                                       (5, 'c')])
  config.data.root = os.path.dirname(json_path)
  config.data.val_json, config.data.val_images = 'val.json', 'images'
  if config.model == 'embedmask':  # Validates on the split, as it is.
    sources = {'train_source': functools.partial(detection_batches, config)}
  else:  # Validates on patches, and draws on the split's images.
    sources = fake_batches.sources(config)
  train_and_evaluate(bind(config), workdir, **sources)
  return tensorboard_images(workdir)


@pytest.mark.parametrize('family_name', ['deepmask', 'embedmask'])
def test_validation_writes_prediction_images(tmp_path, family_name):
  if family_name == 'embedmask':
    config = tiny_embedmask_config(**{
        'schedule.total_steps': 2, 'eval_every_steps': 1,
        'tensorboard_images': 1, 'validation_images': 2})
  else:
    config = tiny_config(**{
        'patch.object_window': 64, 'patch.label_size': 32, 'batch_size': 8,
        'schedule.total_steps': 2, 'eval_every_steps': 1,
        'validation_images': 8, 'tensorboard_images': 1})
  images = run(config, str(tmp_path / 'run'), tmp_path / 'split')
  name = get_family(family_name).validation_name
  assert sorted(images) == [(f'{name}/predictions/first', 1),
                            (f'{name}/predictions/first', 2)]
  assert images[f'{name}/predictions/first', 2].shape == (64, 64, 3)


def test_zero_tensorboard_images_writes_none(tmp_path):
  config = tiny_config(**{
      'patch.object_window': 64, 'patch.label_size': 32, 'batch_size': 8,
      'schedule.total_steps': 1, 'validation_images': 8,
      'tensorboard_images': 0})
  images = run(config, str(tmp_path / 'run'), tmp_path / 'split')
  assert not images
