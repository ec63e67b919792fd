"""Prediction overlays on fixed validation images (for TensorBoard)."""

import numpy as np

from deepmask_jax.evaluation import prediction_images as module
from deepmask_jax.evaluation.prediction_images import (PredictionImages,
                                                       first_val_images,
                                                       prediction_images,
                                                       shrink)
from tests.evaluation.conftest import write_tiny_split
from tests.viewer.conftest import FakePredictor


def test_first_val_images_are_readable_ones_in_json_order(tmp_path):
  json_path, image_dir = write_tiny_split(tmp_path, [(1, 'a'), (2, 'b')],
                                         missing=('gone.png',))
  assert list(first_val_images(json_path, image_dir, 5)) == ['first',
                                                             'second']
  chosen = first_val_images(json_path, image_dir, 1)
  assert list(chosen) == ['first'] and chosen['first'].shape == (64, 64, 3)


def test_shrink_keeps_the_aspect_and_small_images():
  image = np.zeros((100, 50, 3), np.uint8)
  assert shrink(image, 20).shape == (20, 10, 3)
  assert shrink(image, 200) is image


def test_predictor_is_built_once_and_gets_each_new_variables():
  built = []

  def make(variables):
    built.append(FakePredictor(class_aware=True))
    return built[-1]

  images = {'x': np.full((20, 30, 3), 40, np.uint8)}
  draw = PredictionImages(make, images)
  first = draw({'w': np.zeros(2)})
  second = draw({'w': np.ones(2)})
  assert len(built) == 1
  assert built[0].variables['w'].tolist() == [1.0, 1.0]
  assert first['x'].shape == (20, 30, 3)
  assert np.any(first['x'] != images['x']) and np.array_equal(first['x'],
                                                              second['x'])


def test_nothing_to_draw_says_why(tmp_path, capsys):
  assert prediction_images(0, 'any.json', 'any', None) is None
  assert prediction_images(4, str(tmp_path / 'val.json'), str(tmp_path),
                           None) is None
  assert 'no val json at' in capsys.readouterr().out
  json_path, image_dir = write_tiny_split(tmp_path, [(1, 'a'), (2, 'b')])
  draw = prediction_images(3, json_path, image_dir, FakePredictor)
  assert list(draw.images) == ['first', 'second']
  assert '2 val images of the 3 asked for' in capsys.readouterr().out


def test_at_most_drawn_results_per_image():
  drawn = module.DRAWN
  image = np.zeros((40, 40, 3), np.uint8)
  predictor = FakePredictor(count=drawn + 5)
  draw = PredictionImages(lambda variables: predictor, {'x': image})
  # The fake's masks are nested squares: the largest drawn one reaches
  # pixel drawn - 1 + 20 - 1 on the diagonal, the ones left out further.
  out = draw({})['x']
  assert np.any(out[20 + drawn - 2, 20 + drawn - 2] != 0)
  assert not np.any(out[20 + drawn + 2, 20 + drawn + 2] != 0)
