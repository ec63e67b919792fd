"""EmbedMask losses against brute-force numpy and hand-made cases."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P

from deepmask_jax.families.embedmask.defaults import embedmask_defaults
from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.families.embedmask import losses as el


def test_focal_loss_matches_the_formula():
  rng = np.random.default_rng(0)
  logits = rng.normal(0, 3, (5, 3)).astype(np.float32)
  labels = np.array([0, 1, 3, 2, 0])
  p = 1 / (1 + np.exp(-logits.astype(np.float64)))
  expected = 0.0
  for i, label in enumerate(labels):
    for c in range(3):
      if label == c + 1:
        expected -= 0.25 * (1 - p[i, c]) ** 2 * np.log(p[i, c])
      else:
        expected -= 0.75 * p[i, c] ** 2 * np.log(1 - p[i, c])
  np.testing.assert_allclose(el.sigmoid_focal_loss(logits, labels), expected,
                             rtol=1e-5)


def brute_giou(pred, target):
  """1 - GIoU from the boxes [-l, -t, r, b] themselves (not the ltrb shortcut)."""
  a = np.array([-pred[0], -pred[1], pred[2], pred[3]], np.float64)
  b = np.array([-target[0], -target[1], target[2], target[3]], np.float64)
  def area(box):
    return max(box[2] - box[0], 0) * max(box[3] - box[1], 0)
  inter = area(np.concatenate([np.maximum(a[:2], b[:2]),
                               np.minimum(a[2:], b[2:])]))
  union = area(a) + area(b) - inter
  hull = area(np.concatenate([np.minimum(a[:2], b[:2]),
                              np.maximum(a[2:], b[2:])])) + 1e-7
  return 1 - ((inter + 1) / (union + 1) - (hull - union) / hull)


def test_giou_loss_matches_box_geometry():
  rng = np.random.default_rng(1)
  pred = rng.uniform(0, 3, (6, 4)).astype(np.float32)
  target = rng.uniform(0.1, 3, (6, 4)).astype(np.float32)
  weights = rng.uniform(0, 1, 6).astype(np.float32)
  expected = sum(w * brute_giou(p, t) for p, t, w in zip(pred, target, weights))
  np.testing.assert_allclose(el.giou_loss(pred, target, weights), expected,
                             rtol=1e-5)
  # Identical boxes: GIoU = 1, no loss.
  assert abs(el.giou_loss(target, target, weights)) < 1e-5


def test_giou_loss_ignores_a_negative_whose_union_is_minus_one():
  # A negative outside GT 0 (seen in training): ReLU'd prediction 0, target
  # distances to GT 0 with U = -1, so the raw (I + 1) / (U + 1) is inf.
  pred = np.array([[0, 0, 0, 0], [1, 1, 2, 2]], np.float32)
  target = np.array([[-7.25, -4.125, 13.5, 8.75], [1, 2, 2, 1]], np.float32)
  weights = np.array([0.0, 0.5], np.float32)
  loss, grad = jax.value_and_grad(el.giou_loss)(pred, target, weights)
  np.testing.assert_allclose(loss, 0.5 * brute_giou(pred[1], target[1]),
                             rtol=1e-5)
  assert np.all(np.isfinite(grad)) and np.all(grad[0] == 0)


def brute_lovasz(logits, labels):
  """Sum over the error-sorted prefixes of relu(error) x the Jaccard increment.

  The Jaccard loss of a set S of mispredicted pixels is |S| / |positives | S|.
  """
  logits, labels = np.float64(logits), np.asarray(labels)
  errors = 1 - logits * (2 * labels - 1)
  order = sorted(range(len(errors)), key=lambda i: -errors[i])
  positives = {i for i in range(len(labels)) if labels[i]}
  def jaccard_loss(mistakes):
    union = positives | mistakes
    return len(mistakes) / len(union) if union else 0.0
  loss, previous = 0.0, 0.0
  for k in range(1, len(order) + 1):
    current = jaccard_loss(set(order[:k]))
    loss += max(errors[order[k - 1]], 0) * (current - previous)
    previous = current
  return loss


@pytest.mark.parametrize('seed', range(4))
def test_lovasz_hinge_matches_brute_force(seed):
  rng = np.random.default_rng(seed)
  logits = rng.normal(0, 2, 9).astype(np.float32)
  labels = (rng.random(9) < 0.4).astype(np.int32)
  np.testing.assert_allclose(el.lovasz_hinge(logits, labels),
                             brute_lovasz(logits, labels), rtol=1e-5)
  all_negative = np.zeros(9, np.int32)
  np.testing.assert_allclose(el.lovasz_hinge(logits, all_negative),
                             brute_lovasz(logits, all_negative), rtol=1e-5)
  # Invalid elements behave as if removed.
  valid = rng.random(9) < 0.6
  np.testing.assert_allclose(el.lovasz_hinge(logits, labels, valid),
                             brute_lovasz(logits[valid], labels[valid]),
                             rtol=1e-5, atol=1e-7)


def test_mask_probability_matches_numpy():
  rng = np.random.default_rng(2)
  pixels = rng.normal(size=(3, 5, 4)).astype(np.float32)
  embedding = rng.normal(size=(2, 4)).astype(np.float32)
  margin = rng.uniform(0.1, 2, (2, 4)).astype(np.float32)
  expected = np.exp(-np.einsum(
      'kd,khwd->khw', margin, (pixels[None] - embedding[:, None, None]) ** 2))
  np.testing.assert_allclose(el.mask_probability(pixels, embedding, margin),
                             expected, rtol=1e-5)
  np.testing.assert_allclose(
      el.mask_log_probability(pixels, embedding, margin), np.log(expected),
      rtol=1e-5)



def test_mask_log_probability_gradient_matches_autodiff():
  """The channel-by-channel backward pass equals autodiff of the formula."""
  rng = np.random.default_rng(6)
  args = (jnp.asarray(rng.normal(size=(3, 5, 4)), jnp.float32),
          jnp.asarray(rng.normal(size=(2, 4)), jnp.float32),
          jnp.asarray(rng.uniform(0.1, 2, (2, 4)), jnp.float32))
  weights = jnp.asarray(rng.normal(size=(2, 3, 5)), jnp.float32)
  def plain(pixels, embedding, margin):
    diff = pixels[None] - embedding[:, None, None]
    return -jnp.sum(margin[:, None, None] * diff ** 2, axis=-1)
  def objective(fn):
    return lambda *a: jnp.sum(weights * jnp.sin(fn(*a)))
  expected = jax.grad(objective(plain), argnums=(0, 1, 2))(*args)
  actual = jax.grad(objective(el.mask_log_probability), argnums=(0, 1, 2))(
      *args)
  for got, want in zip(actual, expected):
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)

def test_probability_logit_is_the_logit_and_finite_at_the_ends():
  p = np.array([1e-6, 0.1, 0.5, 0.7, 0.999], np.float64)
  np.testing.assert_allclose(el.probability_logit(jnp.log(p)),
                             np.log(p / (1 - p)), rtol=1e-4)
  ends = el.probability_logit(jnp.array([-jnp.inf, -1e6, 0.0]))
  np.testing.assert_allclose(ends, [np.log(1e-9)] * 2 + [-np.log(1e-9)],
                             rtol=1e-3)


@pytest.mark.parametrize('margin_value', [1e6, 1.0])
@pytest.mark.parametrize('target_value', [0, 1])
def test_mask_loss_finite_when_probability_is_exactly_zero_or_one(
    margin_value, target_value):
  """Huge margins with distinct embeddings give P = 0; equal ones give P = 1."""
  pixels = jnp.full((4, 4, 3), 0.5)
  embedding = jnp.full((1, 3), 0.5 if margin_value == 1.0 else -0.5)
  margin = jnp.full((1, 3), margin_value)
  target = jnp.full((1, 16), target_value)
  probability = el.mask_probability(pixels, embedding, margin)
  assert np.all(probability == (1.0 if margin_value == 1.0 else 0.0))

  def loss(pixels, embedding, margin):
    log_p = el.mask_log_probability(pixels, embedding, margin)
    return el.lovasz_hinge(el.probability_logit(log_p).ravel(), target[0])
  value, grads = jax.jit(jax.value_and_grad(loss, argnums=(0, 1, 2)))(
      pixels, embedding, margin)
  assert np.isfinite(value)
  for grad in grads:
    assert np.all(np.isfinite(grad))


def test_best_iou_positive_selection():
  xy = jnp.array([[20.0, 20.0], [22.0, 20.0], [24.0, 20.0], [60.0, 60.0]])
  stride = jnp.full(4, 8.0)
  boxes = jnp.array([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 70.0, 70.0],
                     [0.0, 0.0, 5.0, 5.0]])
  # Location 1 decodes exactly onto GT 0, locations 0 and 2 do not; location 3
  # (GT 1) is the only one assigned; GT 2 has none.
  box_regression = jnp.array([
      [0.5, 0.5, 0.5, 0.5], [12 / 8, 10 / 8, 8 / 8, 10 / 8],
      [1.0, 1.0, 1.0, 1.0], [0.1, 0.1, 0.1, 0.1]])
  matched = jnp.array([0, 0, 0, 1])
  best_iou_positives = jax.jit(el.best_iou_positives)
  index, has_positive = best_iou_positives(box_regression, xy, stride,
                                           matched, boxes)
  np.testing.assert_array_equal(has_positive, [True, True, False])
  np.testing.assert_array_equal(index[:2], [1, 3])
  # Equal IoUs: the first location wins.
  tied = box_regression.at[2].set(box_regression[1]).at[2, 0].add(0.25)
  tied = tied.at[2, 2].add(-0.25)
  index, _ = best_iou_positives(tied, xy, stride, matched, boxes)
  assert index[0] == 1



def test_image_mask_loss_averages_the_best_proposal_of_used_gts():
  rng = np.random.default_rng(5)
  xy = jnp.array([[20.0, 20.0], [22.0, 20.0], [40.0, 40.0]])
  stride = jnp.full(3, 8.0)
  boxes = jnp.array([[10.0, 10.0, 30.0, 30.0], [50.0, 50.0, 60.0, 60.0],
                     [36.0, 36.0, 44.0, 44.0]])
  box_regression = jnp.array([[0.5] * 4, [12 / 8, 10 / 8, 1.0, 10 / 8],
                              [0.5] * 4])
  pixels = jnp.asarray(rng.normal(size=(3, 3, 2)), jnp.float32)
  embedding = jnp.asarray(rng.normal(size=(3, 2)), jnp.float32)
  margin = jnp.asarray(rng.uniform(0.5, 1, (3, 2)), jnp.float32)
  masks = jnp.asarray(rng.random((3, 3, 3)) < 0.5, jnp.uint8)
  # GT 0: locations 0 and 1 (1 fits best); GT 1: no positive; GT 2: padding.
  matched = jnp.array([0, 0, 2])
  valid = jnp.array([True, True, False])
  image_mask_loss = jax.jit(el.image_mask_loss)
  loss = image_mask_loss(pixels, embedding, margin, box_regression,
                            matched, boxes, valid, masks, xy, stride)
  log_p = el.mask_log_probability(pixels, embedding[1:2], margin[1:2])
  expected = el.lovasz_hinge(el.probability_logit(log_p).ravel(),
                             masks[0].ravel())
  np.testing.assert_allclose(loss, expected, rtol=1e-6)
  assert image_mask_loss(pixels, embedding, margin, box_regression,
                         jnp.array([-1, -1, 2]), boxes, valid, masks, xy,
                         stride) == 0

def tiny_problem(rng, batch=2, size=64, classes=3, dim=4):
  """Random model outputs and a batch with one padding GT row per image."""
  xy, _, _ = fcos_geometry.locations(size, size)
  num_loc, cell = len(xy), size // 4
  outputs = {
      'cls_logits': rng.normal(0, 1, (batch, num_loc, classes)),
      'box_regression': rng.uniform(0, 3, (batch, num_loc, 4)),
      'centerness': rng.normal(0, 1, (batch, num_loc)),
      'proposal_embedding': rng.normal(0, 1, (batch, num_loc, dim)),
      'proposal_margin': rng.uniform(0.2, 2, (batch, num_loc, dim)),
      'pixel_embedding': rng.normal(0, 1, (batch, cell, cell, dim)),
  }
  outputs = {k: jnp.asarray(v, jnp.float32) for k, v in outputs.items()}
  corner = rng.uniform(0, 30, (batch, 3, 2))
  boxes = np.concatenate([corner, corner + rng.uniform(10, 34, (batch, 3, 2))],
                         -1).astype(np.float32)
  masks = np.zeros((batch, 3, cell, cell), np.uint8)
  for b in range(batch):
    for m in range(3):
      x0, y0, x1, y1 = (boxes[b, m] / 4).astype(int)
      masks[b, m, y0:y1 + 1, x0:x1 + 1] = 1
  pixel = np.clip(xy.astype(int) // 4, 0, cell - 1)
  batch_dict = {
      'image': np.zeros((batch, size, size, 3), np.float32),
      'boxes': boxes,
      'classes': rng.integers(0, classes, (batch, 3)).astype(np.int32),
      'valid': np.array([[True, True, False]] * batch),
      'masks': masks,
      'mask_points': masks[:, :, pixel[:, 1], pixel[:, 0]].astype(bool),
  }
  return outputs, batch_dict


def config(dim=4, classes=3):
  cfg = embedmask_defaults()
  cfg.num_classes, cfg.embed_dim = classes, dim
  return cfg


def test_embedmask_loss_jits_with_finite_values_and_gradients():
  outputs, batch = tiny_problem(np.random.default_rng(3))
  def total(outputs):
    return el.embedmask_loss(outputs, batch, config(), axis_name=None)
  (value, metrics), grads = jax.jit(
      jax.value_and_grad(total, has_aux=True))(outputs)
  assert np.isfinite(value)
  assert set(metrics) == {'loss_cls', 'loss_reg', 'loss_centerness',
                          'loss_mask'}
  for name, metric in metrics.items():
    assert np.isfinite(metric) and metric > 0, name
  np.testing.assert_allclose(value, sum(metrics.values()), rtol=1e-6)
  for name, grad in grads.items():
    assert np.all(np.isfinite(grad)), name
  assert np.any(grads['pixel_embedding'] != 0)
  assert np.any(grads['proposal_margin'] != 0)
  # bfloat16 outputs are computed in float32 inside.
  half = jax.tree.map(lambda x: x.astype(jnp.bfloat16), outputs)
  value16, _ = jax.jit(total)(half)
  assert value16.dtype == jnp.float32
  np.testing.assert_allclose(value16, value, rtol=0.05)


def test_device_mean_of_shares_is_the_single_device_loss():
  outputs, batch = tiny_problem(np.random.default_rng(4), batch=4)
  cfg = config()
  single, single_metrics = jax.jit(
      lambda o, b: el.embedmask_loss(o, b, cfg, axis_name=None))(outputs, batch)

  mesh = jax.make_mesh((2,), ('data',), devices=jax.devices()[:2],
                       axis_types=(jax.sharding.AxisType.Auto,))
  def share(outputs, batch):
    loss, metrics = el.embedmask_loss(outputs, batch, cfg, axis_name='data')
    return jax.tree.map(lambda x: x[None], (loss, metrics))
  sharded = jax.jit(jax.shard_map(share, mesh=mesh, in_specs=P('data'),
                                  out_specs=P('data'), check_vma=False))
  loss, metrics = sharded(outputs, batch)
  np.testing.assert_allclose(loss.mean(), single, rtol=1e-5)
  for name, value in metrics.items():
    np.testing.assert_allclose(value.mean(), single_metrics[name], rtol=1e-5,
                               err_msg=name)
  # The two devices really hold different shares.
  assert not np.allclose(loss[0], loss[1])
