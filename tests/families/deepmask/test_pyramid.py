"""Pyramid scales, canvas buckets, valid positions and the image resize."""

import math

import jax.numpy as jnp
import numpy as np

from deepmask_jax.families.deepmask.defaults import inference_config
from deepmask_jax.families.deepmask.pyramid import (GREY, Level, build_canvas,
                                            plan_levels, pyramid_scales,
                                            resize_bilinear, window_origins)
from deepmask_jax.models.layers import resize_align_corners
from tests.conftest import tiny_config


def test_scales_are_half_octaves_and_zoom_adds_two():
  settings = inference_config(tiny_config())
  assert np.allclose(np.log2(pyramid_scales(settings)),
                     [-2.5, -2, -1.5, -1, -0.5, 0, 0.5])
  settings.zoom = True
  assert np.allclose(np.log2(pyramid_scales(settings))[-2:], [0.5, 1.0])


def test_config_inference_section_overrides_defaults():
  config = tiny_config()
  config.inference = {'results_per_image': 7}
  settings = inference_config(config, zoom=True)
  assert settings.results_per_image == 7 and settings.zoom
  assert settings.mask_threshold == 0.2


def test_levels_have_the_reference_positions_on_bucketed_canvases():
  levels = plan_levels(480, 640, pyramid_scales(inference_config(None)),
                       border=80, feature_size=10, bucket_multiple=64)
  assert len(levels) == 7
  for level in levels:
    h, w = level.size
    assert (h, w) == (round(level.scale * 480), round(level.scale * 640))
    # Torch: the (h + 160)-px input has ceil((h + 160) / 16) layer3 cells,
    # hence ceil((h + 160) / 16) - 9 window positions.
    assert level.positions == (math.ceil((h + 160) / 16) - 9,
                               math.ceil((w + 160) / 16) - 9)
    assert all(side % 64 == 0 for side in level.canvas)
    # Every valid window fits on the canvas: its map has enough positions.
    assert level.canvas[0] // 16 - 9 >= level.positions[0]
    assert level.canvas[1] // 16 - 9 >= level.positions[1]
    assert level.canvas[0] >= h + 160 and level.canvas[1] >= w + 160


def test_scales_with_an_empty_image_are_skipped():
  levels = plan_levels(2, 3, [0.25, 1.0], 80, 10, 64)
  assert [level.size for level in levels] == [(2, 3)]


def test_canvas_holds_the_image_at_the_border_in_grey():
  image = np.random.default_rng(0).random((30, 40, 3), np.float32)
  level = Level(1.0, (30, 40), (192, 256), (3, 4))
  canvas = build_canvas(image, level, border=80)
  assert canvas.shape == (192, 256, 3)
  np.testing.assert_allclose(canvas[80:110, 80:120], image, atol=1e-6)
  frame = np.ones((192, 256), bool)
  frame[80:110, 80:120] = False
  assert np.all(canvas[frame] == GREY)


def test_resize_matches_the_models_align_corners_resize():
  image = np.random.default_rng(1).random((37, 23, 3), np.float32)
  expected = resize_align_corners(jnp.asarray(image.transpose(2, 0, 1)),
                                  (11, 52))
  np.testing.assert_allclose(resize_bilinear(image, (11, 52)),
                             np.asarray(expected).transpose(1, 2, 0),
                             atol=1e-5)


def test_window_origins_divide_by_the_scale_and_floor():
  level = Level(2 ** -0.5, (1, 1), (64, 64), (1, 1))
  rows, cols = window_origins(level, np.array([0, 3]), np.array([7, 1]), 80)
  np.testing.assert_array_equal(
      rows, np.floor((16 * np.array([0, 3]) - 80) * 2 ** 0.5))
  np.testing.assert_array_equal(
      cols, np.floor((16 * np.array([7, 1]) - 80) * 2 ** 0.5))
