"""EmbedMask V3 losses (reference_embedmask.md sections 2.2-2.4 and 9).

  total = focal classification + centerness-weighted GIoU + centerness BCE
          + mask_loss_weight * Lovasz hinge mask loss

Everything is a pure, jittable function with static shapes, computed in float32
whatever the dtype of the model outputs.

Data parallel form (`embedmask_loss`): each device returns its share such that
the mean over devices (the trainer's `lax.pmean`) is the global objective, the
reference's normalisation: the detection losses are divided by all-device
counts averaged per device (`psum(x) / num_devices`), the mask loss is a mean
over the device's own images (not normalised across devices, as the reference).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax

from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.families.embedmask.targets import fcos_targets

# The reference clamps P to [1e-9, 1 - 1e-9] before taking its logit, i.e. it
# means logits within +-20.7; these are those bounds on log P (float32 keeps
# -1e-9 exactly, while 1 - 1e-9 rounds to 1).
LOG_PROBABILITY_MIN = float(np.log(1e-9))
LOG_PROBABILITY_MAX = -1e-9


def sigmoid_focal_loss(logits, labels, alpha: float = 0.25,
                       gamma: float = 2.0):
  """Summed sigmoid focal loss; logits [..., C], labels [...] int, 0 = background.

  Label c > 0 is a one-hot target on class c - 1; background is all zeros.
  """
  targets = jax.nn.one_hot(labels - 1, logits.shape[-1], dtype=jnp.float32)
  return optax.sigmoid_focal_loss(logits.astype(jnp.float32), targets,
                                  alpha=alpha, gamma=gamma).sum()


def giou_loss(pred_ltrb, target_ltrb, weights):
  """Weighted sum of 1 - GIoU of ltrb boxes around the same point.

  The reference's IOULoss('giou'): IoU = (I + 1) / (U + 1); the enclosing box
  has sides max(l) + max(r) by max(t) + max(b), its area + 1e-7.
  Only entries with weight > 0 count, as the reference, which evaluates
  positives alone: a negative's target (distances to GT 0, often negative)
  can make U + 1 exactly 0, and 0 * inf would be a NaN loss, so those
  entries compute on a unit box instead.
  Args:
    pred_ltrb, target_ltrb: [..., 4] distances (left, top, right, bottom).
    weights: [...] (centerness targets on positives, 0 elsewhere).
  """
  counted = (weights > 0)[..., None]
  pred = jnp.where(counted, pred_ltrb.astype(jnp.float32), 1.0)
  target = jnp.where(counted, target_ltrb.astype(jnp.float32), 1.0)
  def area(ltrb):
    return (ltrb[..., 0] + ltrb[..., 2]) * (ltrb[..., 1] + ltrb[..., 3])
  inner = area(jnp.minimum(pred, target))
  union = area(pred) + area(target) - inner
  enclosing = area(jnp.maximum(pred, target)) + 1e-7
  giou = (inner + 1) / (union + 1) - (enclosing - union) / enclosing
  return jnp.sum((1 - giou) * weights)


def centerness_loss(logits, targets, weights):
  """Summed BCE-with-logits of centerness logits [...] on targets [...] x weights."""
  bce = optax.sigmoid_binary_cross_entropy(logits.astype(jnp.float32), targets)
  return jnp.sum(bce * weights)


@jax.custom_vjp
def _negative_weighted_distance(pixel, embedding, margin):
  """-sum_d m_kd (p_hwd - q_kd)^2: float32 [h, w, D], [K, D], [K, D] -> [K, h, w]."""
  diff = pixel[None] - embedding[:, None, None, :]
  return -jnp.sum(margin[:, None, None, :] * jnp.square(diff), axis=-1)


def _distance_forward(pixel, embedding, margin):
  return (_negative_weighted_distance(pixel, embedding, margin),
          (pixel, embedding, margin))


def _distance_backward(residuals, cotangent):
  """A scan over channels: autodiff would keep a [K, h, w, D] difference."""
  pixel, embedding, margin = residuals

  def channel(_, inputs):
    pixel_d, embedding_d, margin_d = inputs  # [h, w], [K], [K]
    diff = pixel_d[None] - embedding_d[:, None, None]  # [K, h, w]
    weighted = cotangent * diff
    scaled = 2 * margin_d[:, None, None] * weighted
    return None, (-jnp.sum(scaled, axis=0), jnp.sum(scaled, axis=(1, 2)),
                  -jnp.sum(weighted * diff, axis=(1, 2)))

  _, (grad_pixel, grad_embedding, grad_margin) = jax.lax.scan(
      channel, None, (jnp.moveaxis(pixel, -1, 0), embedding.T, margin.T))
  return (jnp.moveaxis(grad_pixel, 0, -1), grad_embedding.T, grad_margin.T)


_negative_weighted_distance.defvjp(_distance_forward, _distance_backward)


def mask_log_probability(pixel_embedding, embedding, margin):
  """log P = -sum_d m_d (p_d - q_d)^2: pixels [h, w, D], proposals [K, D] -> [K, h, w].

  The difference form (not an expanded p^2 - 2pq + q^2) keeps log P exactly 0
  for identical embeddings and never positive. The gradient is taken one
  channel at a time, so memory stays O(K h w) instead of O(K h w D).
  """
  return _negative_weighted_distance(pixel_embedding.astype(jnp.float32),
                                     embedding.astype(jnp.float32),
                                     margin.astype(jnp.float32))


def mask_probability(pixel_embedding, embedding, margin):
  """P = exp(-sum_d m_d (p_d - q_d)^2): [h, w, D], [K, D], [K, D] -> [K, h, w]."""
  return jnp.exp(mask_log_probability(pixel_embedding, embedding, margin))


def log1mexp(x):
  """log(1 - exp(x)) for x < 0, stable on both sides of -log 2.

  Each branch gets a safe input so the unused one cannot put a NaN into the
  gradient.
  """
  near_zero = x > -np.log(2.0)
  x_near = jnp.where(near_zero, x, -1.0)
  x_far = jnp.where(near_zero, -1.0, x)
  return jnp.where(near_zero, jnp.log(-jnp.expm1(x_near)),
                   jnp.log1p(-jnp.exp(x_far)))


def probability_logit(log_probability):
  """logit(P) = log P - log(1 - P) from log P, finite for P = 0 and P = 1.

  The fix of reference issue #14: the reference clamps P to [1e-9, 1 - 1e-9],
  but in float32 1 - 1e-9 == 1, so P = 1 gives an infinite logit (NaN in the
  Lovasz hinge with an empty target). Here log P is clipped to
  [log 1e-9, -1e-9], representable in float32, and the logit is taken in log
  space; the value lies in about [-20.7, 20.7] and the gradient is finite
  (zero beyond the clip, as with the reference's clamp).
  """
  log_p = jnp.clip(log_probability, LOG_PROBABILITY_MIN, LOG_PROBABILITY_MAX)
  return log_p - log1mexp(log_p)


def lovasz_grad(sorted_labels):
  """Gradient of the Lovasz extension of the Jaccard loss: labels [P] sorted by error."""
  positives = jnp.sum(sorted_labels)
  intersection = positives - jnp.cumsum(sorted_labels)
  union = positives + jnp.cumsum(1 - sorted_labels)  # >= 1 everywhere.
  jaccard = 1 - intersection / union
  return jnp.diff(jaccard, prepend=0.0)


def lovasz_hinge(logits, labels, valid=None):
  """Binary Lovasz hinge of one instance: logits [P], labels [P] {0, 1}.

  valid: optional [P] bool; invalid elements act as if removed (their errors
  sort last and add nothing). With no positive label the loss is the largest
  hinge error, as in the reference.
  """
  logits = logits.astype(jnp.float32)
  labels = labels.astype(jnp.float32)
  if valid is None:
    valid = jnp.ones(logits.shape, bool)
  errors = jnp.where(valid, 1 - logits * (2 * labels - 1), -jnp.inf)
  labels = jnp.where(valid, labels, 0.0)
  order = jnp.argsort(errors, descending=True, stable=True)
  grad = lovasz_grad(labels[order])
  return jnp.dot(jax.nn.relu(errors[order]), grad)


def decode_boxes(box_regression, xy, stride):
  """ltrb in stride units [L, 4] at pixels xy [L, 2] -> xyxy boxes [L, 4]."""
  distances = box_regression.astype(jnp.float32) * stride[:, None]
  return jnp.concatenate([xy - distances[:, :2], xy + distances[:, 2:]], -1)


def best_iou_positives(box_regression, xy, stride, matched, boxes):
  """The mask-loss proposal of each GT (V3 get_pos_proposal_indexes).

  Among the locations assigned to GT t (matched == t), the one whose detached
  decoded box has the highest +1-convention IoU with GT t, first on ties.
  Returns (index [M] int32 into L, has_positive [M] bool).
  """
  decoded = jax.lax.stop_gradient(decode_boxes(box_regression, xy, stride))
  iou = fcos_geometry.box_iou(decoded, boxes.astype(jnp.float32))  # [L, M]
  assigned = matched[:, None] == jnp.arange(boxes.shape[0])[None, :]
  index = jnp.argmax(jnp.where(assigned, iou, -1.0), axis=0)
  return index.astype(jnp.int32), assigned.any(axis=0)


def image_mask_loss(pixel_embedding, proposal_embedding, proposal_margin,
                    box_regression, matched, boxes, valid, masks, xy, stride):
  """Lovasz hinge mask loss of one image, averaged over its used GTs (0 if none).

  Args:
    pixel_embedding: [h, w, D] at stride 4; masks: [M, h, w] {0, 1} targets.
    proposal_embedding, proposal_margin, box_regression: [L, D], [L, D], [L, 4].
    matched: [L] GT index of each location (-1 negative); boxes [M, 4] xyxy;
    valid: [M] bool; xy, stride: [L, 2], [L] location pixels and strides.
  """
  index, has_positive = best_iou_positives(box_regression, xy, stride, matched,
                                           boxes)
  used = has_positive & valid
  log_p = mask_log_probability(pixel_embedding, proposal_embedding[index],
                               proposal_margin[index])  # [M, h, w]
  logits = probability_logit(log_p).reshape(log_p.shape[0], -1)
  per_instance = jax.vmap(lovasz_hinge)(logits,
                                        masks.reshape(masks.shape[0], -1))
  count = jnp.sum(used)
  return jnp.sum(jnp.where(used, per_instance, 0.0)) / jnp.maximum(count, 1)


def _device_average(value, axis_name):
  """psum(value) / number of devices; value itself when axis_name is None."""
  if axis_name is None:
    return value
  return jax.lax.psum(value, axis_name) / jax.lax.psum(1, axis_name)


def embedmask_loss(outputs, batch, config, axis_name='data'):
  """EmbedMask's training objective on one device's batch.

  Args:
    outputs: the model's 'cls_logits' [B, L, C], 'box_regression' [B, L, 4]
      (ltrb in stride units), 'centerness' [B, L] logits,
      'proposal_embedding' / 'proposal_margin' [B, L, D], 'pixel_embedding'
      [B, H/4, W/4, D]; L runs over P3..P7 in fcos_geometry order.
    batch: 'image' [B, H, W, 3], 'boxes' [B, M, 4] xyxy, 'classes' [B, M],
      'valid' [B, M], 'masks' [B, M, H/4, W/4], 'mask_points' [B, M, L].
    config: config.embedmask.
    axis_name: the data-parallel axis; None means one device, no collectives.
  Returns (total, {'loss_cls', 'loss_reg', 'loss_centerness', 'loss_mask'}):
    the device's share, whose mean over devices is the global objective.
  """
  outputs = jax.tree.map(lambda x: x.astype(jnp.float32), outputs)
  height, width = batch['image'].shape[1:3]
  xy, stride, level = fcos_geometry.locations(height, width, config.strides)
  assign = functools.partial(
      fcos_targets, xy=xy, stride=stride, level=level,
      scale_ranges=tuple(config.scale_ranges),
      center_radius=config.center_radius,
      sample_in_mask=config.sample_in_mask)
  targets = jax.vmap(assign)(batch['boxes'], batch['classes'], batch['valid'],
                             batch['mask_points'])

  positive = (targets['labels'] > 0).astype(jnp.float32)
  num_pos_avg = jnp.maximum(_device_average(positive.sum(), axis_name), 1.0)
  ctr_weights = targets['centerness_targets'] * positive
  ctr_sum_avg = _device_average(ctr_weights.sum(), axis_name)
  # No positive anywhere: the numerator is 0 too, keep the quotient 0.
  ctr_sum_avg = jnp.where(ctr_sum_avg > 0, ctr_sum_avg, 1.0)

  loss_cls = sigmoid_focal_loss(outputs['cls_logits'], targets['labels'],
                                config.focal_alpha, config.focal_gamma)
  loss_reg = giou_loss(outputs['box_regression'], targets['box_targets'],
                       ctr_weights)
  loss_ctr = centerness_loss(outputs['centerness'],
                             targets['centerness_targets'], positive)
  per_image_mask = jax.vmap(
      functools.partial(image_mask_loss, xy=xy, stride=stride))(
          outputs['pixel_embedding'], outputs['proposal_embedding'],
          outputs['proposal_margin'], outputs['box_regression'],
          targets['matched'], batch['boxes'], batch['valid'], batch['masks'])
  metrics = {
      'loss_cls': loss_cls / num_pos_avg,
      'loss_reg': loss_reg / ctr_sum_avg,
      'loss_centerness': loss_ctr / num_pos_avg,
      'loss_mask': config.mask_loss_weight * jnp.mean(per_image_mask),
  }
  return sum(metrics.values()), metrics
