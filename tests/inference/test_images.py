"""Image reading shared by the families' predictors."""

import numpy as np
from PIL import Image
import pytest

from deepmask_jax.inference.images import as_rgb, read_image


def test_rejects_non_uint8_images():
  with pytest.raises(TypeError):
    as_rgb(np.zeros((4, 4, 3), np.float32))
  with pytest.raises(ValueError):
    as_rgb(np.zeros((4, 4, 2), np.uint8))


def test_read_image_gives_rgb_for_gray_and_alpha_files(tmp_path):
  Image.fromarray(np.full((5, 6), 9, np.uint8)).save(tmp_path / 'g.jpg')
  rgba = np.zeros((5, 6, 4), np.uint8)
  rgba[..., 0], rgba[..., 3] = 200, 10
  Image.fromarray(rgba).save(tmp_path / 'a.png')
  assert read_image(str(tmp_path / 'g.jpg')).shape == (5, 6, 3)
  alpha = read_image(str(tmp_path / 'a.png'))
  assert alpha.shape == (5, 6, 3) and (alpha[..., 0] == 200).all()
