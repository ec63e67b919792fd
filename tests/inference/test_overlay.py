"""Overlays: tinted masks and box outlines on the image."""

import numpy as np
from PIL import Image

from deepmask_jax.inference.overlay import draw_overlay, palette, save_overlay


def test_overlay_tints_mask_pixels_and_leaves_far_pixels():
  image = np.full((40, 48, 3), 100, np.uint8)
  masks = np.zeros((1, 40, 48), bool)
  masks[0, 2:5, 3:7] = True
  drawn = draw_overlay(image, masks, np.array([[3, 2, 4, 3]]),
                       np.array([0.9]))
  assert drawn.shape == image.shape
  expected = np.round(0.5 * 100 + 0.5 * palette(1)[0].astype(np.float32))
  np.testing.assert_array_equal(drawn[3, 4], expected)  # Tinted, not outline.
  assert (drawn[30:, :] == 100).all() and (drawn[:, 40:] == 100).all()


def test_best_proposal_is_drawn_on_top(tmp_path):
  image = np.zeros((20, 20, 3), np.uint8)
  masks = np.ones((2, 20, 20), bool)
  empty = np.zeros((2, 4))
  drawn = draw_overlay(image, masks, empty, np.array([0.9, 0.1]))
  colours = palette(2).astype(np.float32)
  # Second tinted first, then the best over it.
  expected = np.round(0.5 * np.round(0.5 * colours[1]) + 0.5 * colours[0])
  np.testing.assert_allclose(drawn[10, 10], expected, atol=1)
  save_overlay(str(tmp_path / 'o.png'), image, masks, empty,
               np.array([0.9, 0.1]))
  assert Image.open(tmp_path / 'o.png').format == 'PNG'
