"""patch_ops: window resampling, partial JPEG decoding, labels, flip, normalise."""

import io

import numpy as np
from PIL import Image
import pytest
import tensorflow as tf

from deepmask_jax.families.deepmask import patch_ops

FILL = 127.5


def _random_image(height=37, width=53, seed=0):
  return np.random.default_rng(seed).integers(0, 256, (height, width, 3)).astype(
      np.float32)


def _padded_crop(image, x0, y0, side, fill):
  """The window cut out of the image, `fill` outside (the reference cropTensor)."""
  height, width = image.shape[:2]
  out = np.full((side, side, image.shape[2]), fill, np.float32)
  rows = slice(max(y0, 0), min(y0 + side, height))
  cols = slice(max(x0, 0), min(x0 + side, width))
  out[rows.start - y0:rows.stop - y0, cols.start - x0:cols.stop - x0] = image[rows, cols]
  return out


def _resample(image, window, size, fill=FILL):
  return patch_ops.resample_window(tf.constant(image), tf.constant(window, tf.int32),
                                   size, fill).numpy()


@pytest.mark.parametrize('window,size', [((5, -7, 24), 8), ((-11, 3, 48), 12),
                                         ((-3, -5, 60), 12), ((40, 30, 24), 6)])
def test_integer_shrinking_is_the_area_mean_with_grey_outside(window, size):
  image = _random_image()
  k = window[2] // size
  expected = _padded_crop(image, *window, FILL).reshape(size, k, size, k, 3).mean(
      axis=(1, 3))
  np.testing.assert_allclose(_resample(image, window, size), expected, atol=1e-3)


@pytest.mark.parametrize('window,size', [((3, 4, 10), 20), ((-4, 30, 13), 26),
                                         ((10, 10, 16), 16)])
def test_enlarging_is_half_pixel_bilinear(window, size):
  image = _random_image()
  crop = _padded_crop(image, *window, FILL)
  expected = tf.image.resize(crop, (size, size), method='bilinear').numpy()
  # tf.image.resize repeats the crop's edge pixels where the window reads one
  # pixel beyond itself; the interior is the same bilinear interpolation.
  inner = slice(2, -2)
  np.testing.assert_allclose(_resample(image, window, size)[inner, inner],
                             expected[inner, inner], atol=1e-3)


def test_window_outside_the_image_is_fill():
  assert np.all(_resample(_random_image(), (200, 200, 40), 8) == FILL)


def test_non_integer_shrinking_keeps_the_geometry():
  # A bright square in a dark image stays centred where the frame puts it.
  image = np.zeros((300, 300, 1), np.float32)
  image[100:200, 100:200] = 1
  patch = _resample(image, (50, 50, 200), 48, fill=0)[..., 0]  # 4.17 px/pixel.
  rows = np.flatnonzero(patch.mean(axis=1) > 0.25)
  assert (rows.min(), rows.max()) == (12, 35)  # [12, 36) = [50, 150) px / 4.17.
  np.testing.assert_allclose(patch, patch.T, atol=1e-6)


def _jpeg(image):
  buffer = io.BytesIO()
  Image.fromarray(image.astype(np.uint8)).save(buffer, format='JPEG', quality=90)
  return buffer.getvalue()


@pytest.mark.parametrize('window', [(10, 12, 20), (-6, -9, 30), (40, 20, 200),
                                    (100, 90, 15)])
def test_partial_jpeg_decoding_gives_the_same_patch(window):
  jpeg = tf.constant(_jpeg(_random_image(120, 110, seed=1)))
  full = tf.io.decode_jpeg(jpeg, channels=3)
  crop, shifted = patch_ops.decode_jpeg_window(jpeg, tf.constant(window, tf.int32))
  assert crop.shape[0] <= window[2] + 2 and crop.shape[1] <= window[2] + 2
  left, top = window[0] - shifted[0], window[1] - shifted[1]
  np.testing.assert_array_equal(
      crop, full[top:top + crop.shape[0], left:left + crop.shape[1]])
  expected = patch_ops.patch_image(full, tf.constant(window, tf.int32), 24)
  np.testing.assert_allclose(patch_ops.patch_image(crop, shifted, 24), expected,
                             atol=1e-5)


def test_label_is_the_thresholded_mask_in_plus_minus_one():
  mask = np.zeros((64, 64, 1), np.uint8)
  mask[16:48, 24:40] = 1
  label = patch_ops.patch_label(tf.constant(mask), tf.constant([0, 0, 64], tf.int32),
                                32).numpy()
  expected = np.where(mask[::2, ::2, 0] > 0, 1.0, -1.0)
  np.testing.assert_array_equal(label, expected)


def test_flip_mirrors_columns_only_when_asked():
  array = tf.reshape(tf.range(24.0), (2, 4, 3))
  np.testing.assert_array_equal(patch_ops.flip_horizontally(array, tf.constant(True)),
                                array.numpy()[:, ::-1])
  np.testing.assert_array_equal(patch_ops.flip_horizontally(array, tf.constant(False)),
                                array.numpy())


def test_normalise_uses_per_channel_mean_and_std():
  patch = tf.constant([[[0.485, 0.456, 0.406], [0.714, 0.68, 0.631]]])
  out = patch_ops.normalise(patch, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
  np.testing.assert_allclose(out.numpy(), [[[0, 0, 0], [1, 1, 1]]], atol=1e-5)
