"""Dense windows equal the patch form; top-k indexing; merging levels."""

import flax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.families.deepmask.proposals import (INVALID, ProposalNetwork,
                                              merge_levels, top_windows)
from tests.conftest import tiny_model

CANVAS = (240, 256)  # 6 x 7 dense positions.


def centre_taps(variables):
  """Zeroes every 3x3 / 7x7 kernel except its centre tap.

  Receptive fields then stay inside each 192-px patch (layer3 cell k reads
  pixels 16k - 2 .. 16k + 2), so the patch form's own padding never matters
  and dense and patch forms must agree exactly where the geometry is right.
  """
  def fix(path, leaf):
    name = jax.tree_util.keystr(path)
    if name.endswith("['kernel']") and leaf.ndim == 4 and leaf.shape[0] in (
        3, 7):
      centre = leaf.shape[0] // 2
      mask = np.zeros(leaf.shape[:2] + (1, 1), leaf.dtype)
      mask[centre, centre] = 1
      return leaf * mask
    return leaf
  return jax.tree_util.tree_map_with_path(fix, flax.core.unfreeze(variables))


def amplify(variables, module, gain):
  """Scales a mask decoder's kernels up: at Torch's default init its output
  hardly varies between windows, which would make the comparison blind."""
  def fix(path, leaf):
    name = jax.tree_util.keystr(path)
    return leaf * gain if f"'{module}'" in name and 'kernel' in name else leaf
  return jax.tree_util.tree_map_with_path(fix, variables)


def dense_windows(model, variables, config, canvas):
  """All windows of one canvas, decoded by the inference pipeline."""
  positions = tuple(side // 16 - 9 for side in CANVAS)
  count = positions[0] * positions[1]
  network = ProposalNetwork(model, config.patch.mean, config.patch.std,
                            num_proposals=count, decode_chunk=16)
  batch = network.run_levels(variables, canvas[None],
                             np.array([positions], np.int32))
  ranks = np.arange(count)
  logits = network.decode(variables, [batch], [(0, 0, ranks)])
  return (np.asarray(batch.probs[0]), np.asarray(batch.rows[0]),
          np.asarray(batch.cols[0]), np.asarray(logits[:count]))


def patch_outputs(model, variables, config, canvas, origins):
  """Patch-form (mask logits, probabilities) of 192-px crops at `origins`."""
  mean, std = np.array(config.patch.mean), np.array(config.patch.std)
  patches = np.stack([canvas[y:y + 192, x:x + 192] for y, x in origins])
  out = model.apply(variables, jnp.asarray((patches - mean) / std))
  return np.asarray(out['mask']), np.asarray(jax.nn.sigmoid(out['score']))


@pytest.mark.parametrize('kind', ['deepmask', 'sharpmask'])
def test_dense_window_at_r_c_is_the_patch_at_16r_minus_16(kind):
  label_size = 56 if kind == 'deepmask' else 160  # Native mask, no resize.
  model, variables, config = tiny_model(kind, **{
      'patch.label_size': label_size})
  variables = centre_taps(variables)
  if kind == 'deepmask':
    variables = amplify(variables, 'mask_head', 10.0)
  else:
    variables = amplify(amplify(variables, 'refinement', 10.0), 'trunk', 2.0)
  canvas = np.random.default_rng(0).random(CANVAS + (3,), np.float32)
  probs, rows, cols, logits = dense_windows(model, variables, config, canvas)
  inside = (rows >= 1) & (cols >= 1) & (16 * rows + 176 <= CANVAS[0]) & (
      16 * cols + 176 <= CANVAS[1])
  assert inside.sum() >= 6
  # The 160-px object window of position (r, c) starts at canvas pixel
  # (16r, 16c), so its 192-px patch (16 px of context) starts 16 px earlier.
  origins = [(16 * r - 16, 16 * c - 16)
             for r, c in zip(rows[inside], cols[inside])]
  masks, scores = patch_outputs(model, variables, config, canvas, origins)
  # Windows differ, so the equality below means something.
  assert np.ptp(masks, axis=0).max() > 0.1
  np.testing.assert_allclose(logits[inside], masks, rtol=1e-4, atol=1e-4)
  np.testing.assert_allclose(probs[inside], scores, rtol=1e-5, atol=1e-6)
  # One stride off is a different window: the test can tell.
  shifted, _ = patch_outputs(
      model, variables, config, canvas,
      [(y + 16 if y + 208 <= CANVAS[0] else y - 16, x) for y, x in origins])
  assert np.abs(logits[inside] - shifted).max() > 0.1


def test_top_windows_row_col_of_flat_index():
  # The best value sits in the last column of row 0, where the reference's
  # getTopScores returned (row 1, col 1) in 1-based terms.
  scores = np.array([[[0., 1., 2., 9.],
                      [3., 8., 4., 5.],
                      [7., 6., -1., -2.]]], np.float32)
  probs, rows, cols, flat = top_windows(
      jnp.asarray(scores), jnp.array([[3, 4]]), k=12)
  order = np.argsort(-scores[0].ravel(), kind='stable')
  np.testing.assert_array_equal(rows[0], order // 4)
  np.testing.assert_array_equal(cols[0], order % 4)
  np.testing.assert_array_equal(flat[0], order)
  assert (int(rows[0, 0]), int(cols[0, 0])) == (0, 3)
  np.testing.assert_allclose(probs[0], 1 / (1 + np.exp(-np.sort(
      scores[0].ravel())[::-1])), rtol=1e-6)


def test_top_windows_never_selects_padding_positions():
  scores = np.zeros((2, 3, 4), np.float32)
  scores[:, 2, :] = 10.0  # Best values, but in a padding row.
  scores[:, :, 3] = 20.0  # Best values, but in a padding column.
  scores[1] = -scores[1]
  probs, rows, cols, _ = top_windows(jnp.asarray(scores),
                                     jnp.array([[2, 3], [2, 3]]), k=12)
  probs, rows, cols = map(np.asarray, (probs, rows, cols))
  valid = probs != INVALID
  assert valid.sum(axis=1).tolist() == [6, 6]
  assert (rows[valid] < 2).all() and (cols[valid] < 3).all()
  assert (probs[:, :6] != INVALID).all()  # Valid ones come first.


def test_merge_levels_takes_the_best_across_levels():
  level0 = np.array([0.9, 0.5, 0.2, INVALID], np.float32)
  level1 = np.array([0.8, 0.5, 0.4], np.float32)
  probs, level, rank = merge_levels([level0, level1], num=5)
  np.testing.assert_allclose(probs, [0.9, 0.8, 0.5, 0.5, 0.4])
  # Equal scores: the earlier level first, as the reference's strict '>'.
  assert level.tolist() == [0, 1, 0, 1, 1]
  assert rank.tolist() == [0, 0, 1, 1, 2]


def test_merge_levels_drops_invalid_windows():
  probs, level, _ = merge_levels(
      [np.array([0.3, INVALID], np.float32), np.array([INVALID], np.float32)],
      num=10)
  assert probs.tolist() == pytest.approx([0.3])
  assert level.tolist() == [0]
