"""Pasting window logits into image masks: placement, resizing, boxes."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
from pycocotools import mask as mask_utils

from deepmask_jax.families.deepmask.paste import (MaskPaster, num_taps, paste_masks,
                                          probability_logit)
from deepmask_jax.families.deepmask.proposals import WindowLogits
from deepmask_jax.families.deepmask.pyramid import Level

THRESHOLD = probability_logit(0.2)


def torch_scale_1d(values: np.ndarray, size: int) -> np.ndarray:
  """torch/image scaleLinear_rowcol along axis 0, written out loop by loop."""
  source = values.shape[0]
  out = np.zeros((size,) + values.shape[1:], np.float64)
  if size > source:
    scale = (source - 1) / (size - 1)
    for i in range(size):
      if i == size - 1:
        out[i] = values[source - 1]
        continue
      position = i * scale
      low = int(position)
      frac = position - low
      out[i] = (1 - frac) * values[low] + frac * values[min(low + 1,
                                                            source - 1)]
  elif size < source:
    scale = source / size
    for i in range(size):
      start, stop = i * scale, (i + 1) * scale
      first, last = int(start), int(stop)
      acc = (1 - (start - first)) * values[first]
      weight = 1 - (start - first)
      for j in range(first + 1, last):
        acc = acc + values[j]
        weight += 1
      if last < source:
        acc = acc + (stop - last) * values[last]
        weight += stop - last
      out[i] = acc / weight
  else:
    out[:] = values
  return out


def reference_paste(logits, size, origin_y, origin_x, height, width):
  """InferSharpMask getTopMasks for one window, as the Lua loops do it."""
  resized = torch_scale_1d(torch_scale_1d(logits, size).T, size).T
  mask = np.zeros((height, width), bool)
  for i in range(size):
    for j in range(size):
      y, x = origin_y + i, origin_x + j
      if resized[i, j] > THRESHOLD and 0 <= y < height and 0 <= x < width:
        mask[y, x] = True
  return mask


def paste(logits, sizes, origin_y, origin_x, image_hw, canvas, **kwargs):
  logits = np.asarray(logits, np.float32)
  n = len(logits)
  masks, boxes = paste_masks(
      jnp.asarray(logits), jnp.arange(n), jnp.asarray(sizes, jnp.int32),
      jnp.asarray(origin_y, jnp.int32), jnp.asarray(origin_x, jnp.int32),
      jnp.asarray(image_hw, jnp.int32), THRESHOLD, canvas=canvas,
      taps=num_taps(logits.shape[-1], min(sizes)), **kwargs)
  return np.asarray(masks), np.asarray(boxes)


def test_known_mask_lands_at_the_window_offset():
  logits = np.full((1, 160, 160), -5.0, np.float32)
  logits[0, 40:80, 60:100] = 5.0
  # Scale 1: sz = 160, no resizing; the window's pixel (0, 0) at (-32, 0).
  masks, boxes = paste(logits, [160], [-32], [0], (100, 120), (128, 128))
  expected = np.zeros((128, 128), bool)
  expected[8:48, 60:100] = True
  np.testing.assert_array_equal(masks[0], expected)
  np.testing.assert_array_equal(boxes[0], [60, 8, 40, 40])


def test_masks_are_clipped_to_the_image():
  logits = np.full((1, 160, 160), 5.0, np.float32)
  masks, boxes = paste(logits, [160], [-20], [30], (100, 120), (128, 128))
  assert masks[0, :100, 30:120].all()
  assert masks[0].sum() == 100 * 90  # Nothing beyond the image or window.
  np.testing.assert_array_equal(boxes[0], [30, 0, 90, 100])


@pytest.mark.parametrize('source,size', [(56, 113), (56, 90), (160, 113),
                                         (160, 80), (160, 160), (12, 30)])
def test_resizing_and_placement_match_the_reference_loops(source, size):
  rng = np.random.default_rng(source + size)
  # Smooth logits around the threshold, so resizing decides many pixels.
  logits = rng.normal(THRESHOLD, 1.0, (2, source // 4 + 1, source // 4 + 1))
  logits = np.stack([torch_scale_1d(torch_scale_1d(l, source).T, source).T
                     for l in logits]).astype(np.float32)
  origins_y, origins_x = [-7, 21], [13, -10]
  masks, _ = paste(logits, [size, size], origins_y, origins_x, (150, 170),
                   (192, 192))
  for k in range(2):
    expected = reference_paste(logits[k].astype(np.float64), size,
                               origins_y[k], origins_x[k], 150, 170)
    assert 0 < expected.sum() < expected.size
    mismatch = (masks[k, :150, :170] != expected).sum()
    # float32 here vs float64 there: only pixels at the threshold may flip.
    assert mismatch <= 2, mismatch
    assert not masks[k, 150:].any() and not masks[k, :, 170:].any()


def test_boxes_equal_pycocotools_to_bbox_and_empty_masks_give_zeros():
  rng = np.random.default_rng(0)
  logits = rng.normal(-3.0, 2.0, (5, 56, 56)).astype(np.float32)
  logits[4] = -10.0  # Empty.
  masks, boxes = paste(logits, [113, 80, 226, 160, 113], [-40, 5, -90, 0, 0],
                       [10, -20, -60, 30, 0], (100, 140), (128, 192))
  masks = masks[:, :100, :140]
  rles = mask_utils.encode(np.asfortranarray(
      masks.transpose(1, 2, 0).astype(np.uint8)))
  np.testing.assert_array_equal(boxes, mask_utils.toBbox(rles))
  np.testing.assert_array_equal(boxes[4], [0, 0, 0, 0])


def test_column_major_output_is_the_transpose():
  rng = np.random.default_rng(1)
  logits = rng.normal(-1.0, 2.0, (3, 56, 56)).astype(np.float32)
  args = ([113, 160, 320], [-40, 0, -100], [10, -20, -60], (90, 130),
          (128, 192))
  rows, boxes = paste(logits, *args)
  cols, col_boxes = paste(logits, *args, column_major=True)
  np.testing.assert_array_equal(cols, rows.transpose(0, 2, 1))
  np.testing.assert_array_equal(col_boxes, boxes)


def test_paster_chunks_give_the_same_masks_as_one_call():
  rng = np.random.default_rng(2)
  count = 7
  logits = rng.normal(-1.0, 2.0, (count + 3, 56, 56)).astype(np.float32)
  levels = [Level(0.5, (50, 60), (256, 256), (6, 6)),
            Level(1.0, (100, 120), (320, 320), (9, 10))]
  windows = WindowLogits(
      probs=np.linspace(0.9, 0.1, count).astype(np.float32),
      level=np.array([0, 1, 1, 0, 1, 0, 0]),
      rows=rng.integers(0, 6, count), cols=rng.integers(0, 6, count),
      logits=jnp.asarray(logits),
      logits_row=rng.permutation(count + 3)[:count].astype(np.int32))

  def run(budget):
    paster = MaskPaster(160, 0.2, 64, budget, count, num_taps(56, 160))
    chunks = list(paster.paste(windows, levels, (100, 120), border=80))
    return chunks, np.concatenate([m for m, _ in chunks])

  chunks, small = run(budget=2 * 128 * 128)
  assert len(chunks) == math.ceil(count / 2)
  _, whole = run(budget=1 << 20)
  np.testing.assert_array_equal(small, whole)
  assert small.shape == (count, 100, 120)
  # Window 0 (level 0, scale 0.5): sz = 320, origin floor((16 r - 80) / 0.5).
  size, origin_y, origin_x = MaskPaster(
      160, 0.2, 64, 1 << 20, count, 3).window_geometry(windows, levels, 80)
  assert size[0] == 320 and size[1] == 160
  assert origin_y[0] == (16 * windows.rows[0] - 80) * 2
  assert origin_x[1] == 16 * windows.cols[1] - 80
