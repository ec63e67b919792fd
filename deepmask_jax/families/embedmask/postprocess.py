"""EmbedMask inference post-processing on the device (reference section 4).

`detect` turns the network outputs of a batch of canvases into at most
`detections_per_image` detections per image with their stride-4 mask
log-probability maps, in one jitted program with static shapes and no host
sync:
  1. per level: candidates are sigmoid(cls) > score_threshold (before the
     centerness product); score = cls_prob * sigmoid(centerness); the top
     pre_nms_top_n (location, class) pairs by score are kept, their boxes
     decoded (location -/+ ltrb * stride) and clipped to the image's valid
     size as BoxList.clip_to_image(remove_empty=False);
  2. across levels: class-aware greedy NMS (maskrcnn-benchmark ml_nms: +1
     pixel IoU, suppression where IoU > threshold, only within a class), then
     the best `detections_per_image` by score (the reference keeps every
     score tied with the last one; static shapes cut exactly there);
  3. masks: -sum_d m_d (p_d - q_d)^2 of each detection's proposal embedding q
     and margin m against the stride-4 pixel embedding p, inside the box / 4
     (cast to int) padded by mask_box_padding cells, -10 elsewhere (the
     reference's MaskProb CUDA kernel: cells x0 <= x < x1, y0 <= y < y1 with
     x0 = max(int(bx0 / 4) - pad, 0), x1 = min(int(bx1 / 4) + pad, W / 4)).
Pasting the maps at the original image size lives in embedmask_paste.py.
"""

import dataclasses
import functools
from typing import Sequence

import jax
import jax.numpy as jnp

from deepmask_jax.families.embedmask.fcos_geometry import box_iou, level_shapes, locations

MASK_STRIDE = 4  # The pixel embedding's stride.
OUTSIDE_LOGPROB = -10.0  # Mask log-probability outside a detection's box.


@dataclasses.dataclass(frozen=True)
class DetectSettings:
  """Static settings of `detect` (hashable: a jit static argument)."""
  strides: Sequence[int] = (8, 16, 32, 64, 128)
  score_threshold: float = 0.05
  pre_nms_top_n: int = 1000  # Per level and image.
  nms_threshold: float = 0.6
  detections_per_image: int = 100
  mask_box_padding: int = 2  # Stride-4 cells around each box.
  nms_block: int = 256  # Sorted candidates handled per NMS step.

  @classmethod
  def from_config(cls, embedmask) -> 'DetectSettings':
    """From `config.embedmask` (deepmask_jax/config_schema.py)."""
    return cls(strides=tuple(int(s) for s in embedmask.strides),
               score_threshold=float(embedmask.score_threshold),
               pre_nms_top_n=int(embedmask.pre_nms_top_n),
               nms_threshold=float(embedmask.nms_threshold),
               detections_per_image=int(embedmask.results_per_image),
               mask_box_padding=int(embedmask.mask_box_padding))


def clip_boxes(boxes, image_hw):
  """[..., K, 4] xyxy clipped to x in [0, w - 1], y in [0, h - 1].

  image_hw: [..., 2] (h, w) valid sizes, broadcast over K.
  """
  limit = (image_hw[..., None, ::-1] - 1).astype(boxes.dtype)  # (w-1, h-1).
  limit = jnp.concatenate([limit, limit], axis=-1)
  return jnp.clip(boxes, 0.0, limit)


def level_candidates(cls_logits, box_regression, centerness, xy, stride: int,
                     image_hw, top_n: int, score_threshold: float):
  """The best (location, class) candidates of one level, for a batch.

  Args:
    cls_logits: [B, N, C] logits of the level's N locations.
    box_regression: [B, N, 4] ltrb distances in stride units.
    centerness: [B, N] logits.
    xy: [N, 2] pixel positions of the locations.
    stride: the level's stride.
    image_hw: [B, 2] valid (h, w) of each image.
    top_n: candidates kept at most; k = min(top_n, N * C) are returned.
    score_threshold: sigmoid(cls) must exceed this (centerness aside).
  Returns:
    dict of 'boxes' [B, k, 4] xyxy clipped, 'scores' [B, k], 'labels'
    [B, k] int32, 'locations' [B, k] int32 (index within the level),
    'valid' [B, k] bool (k may exceed the number of candidates).
  """
  batch, num, classes = cls_logits.shape
  prob = jax.nn.sigmoid(cls_logits.astype(jnp.float32))
  candidate = (prob > score_threshold).reshape(batch, num * classes)
  score = prob * jax.nn.sigmoid(centerness.astype(jnp.float32))[..., None]
  # Scores are >= 0, so -1 puts non-candidates after every candidate.
  ranked = jnp.where(candidate, score.reshape(batch, num * classes), -1.0)
  top, index = jax.lax.top_k(ranked, min(top_n, num * classes))
  location, label = index // classes, index % classes
  regression = jnp.take_along_axis(
      box_regression.astype(jnp.float32), location[..., None], axis=1)
  position = jnp.asarray(xy, jnp.float32)[location]  # [B, k, 2]
  boxes = jnp.concatenate([position - regression[..., :2] * stride,
                           position + regression[..., 2:] * stride], axis=-1)
  return {'boxes': clip_boxes(boxes, image_hw),
          'scores': jnp.maximum(top, 0.0),
          'labels': label.astype(jnp.int32),
          'locations': location.astype(jnp.int32),
          'valid': jnp.take_along_axis(candidate, index, axis=1)}


def _greedy_within_block(allowed, suppresses):
  """Greedy NMS decisions of a block in score order.

  allowed: [T] bool, not suppressed from outside the block; suppresses:
  [T, T] bool, [i, j] = box j (earlier, j < i) suppresses box i when kept.
  The greedy result is the unique fixed point of keep = allowed & ~any(
  suppresses & keep) (entry i depends only on entries j < i), reached from
  keep = allowed after at most T rounds, usually a handful.
  """

  def step(state):
    keep, _ = state
    new = allowed & ~jnp.any(suppresses & keep[None, :], axis=1)
    return new, jnp.any(new != keep)

  keep, _ = jax.lax.while_loop(lambda state: state[1], step,
                               (allowed, jnp.array(True)))
  return keep


def class_aware_nms(boxes, scores, labels, valid, iou_threshold: float,
                    max_keep: int, block: int = 256):
  """Exact greedy class-aware NMS of one image, at most `max_keep` kept.

  Boxes are visited by descending score (equal scores: lower index first);
  a box is kept unless a kept box of the same label has IoU > threshold with
  it (+1 pixel IoU, as maskrcnn-benchmark's nms kernels). Sorted boxes go in
  blocks of `block`: each block is first checked against the boxes kept so
  far, then resolved within itself; the loop stops once `max_keep` are kept
  (the kept boxes come in score order, so they are the best `max_keep` of
  a full NMS).

  Args:
    boxes: [K, 4] xyxy; scores: [K]; labels: [K] int; valid: [K] bool
      (invalid entries are never kept and suppress nothing).
  Returns:
    (index [max_keep] int32 into the inputs, best first; kept [max_keep]
    bool, False for the unused tail).
  """
  num = boxes.shape[0]
  order = jnp.argsort(jnp.where(valid, -scores, jnp.inf), stable=True)
  padded = -(-num // block) * block
  pad = padded - num
  sorted_boxes = jnp.pad(boxes[order].astype(jnp.float32), ((0, pad), (0, 0)))
  sorted_labels = jnp.pad(labels[order], (0, pad))
  sorted_valid = jnp.pad(valid[order], (0, pad))
  earlier = jnp.arange(block)[None, :] < jnp.arange(block)[:, None]

  def not_done(state):
    start, count = state[:2]
    return (start < padded) & (count < max_keep)

  def visit_block(state):
    start, count, kept_boxes, kept_labels, kept_rank = state
    block_boxes = jax.lax.dynamic_slice_in_dim(sorted_boxes, start, block)
    block_labels = jax.lax.dynamic_slice_in_dim(sorted_labels, start, block)
    block_valid = jax.lax.dynamic_slice_in_dim(sorted_valid, start, block)
    same_as_kept = ((block_labels[:, None] == kept_labels[None, :])
                    & (jnp.arange(max_keep) < count)[None, :])
    hit_by_kept = (box_iou(block_boxes, kept_boxes) > iou_threshold) & same_as_kept
    allowed = block_valid & ~jnp.any(hit_by_kept, axis=1)
    suppresses = ((box_iou(block_boxes, block_boxes) > iou_threshold)
                  & (block_labels[:, None] == block_labels[None, :]) & earlier)
    keep = _greedy_within_block(allowed, suppresses)
    # Kept boxes fill the next free slots in order; past max_keep is dropped.
    slot = jnp.where(keep, count + jnp.cumsum(keep) - 1, max_keep)
    kept_boxes = kept_boxes.at[slot].set(block_boxes, mode='drop')
    kept_labels = kept_labels.at[slot].set(block_labels, mode='drop')
    kept_rank = kept_rank.at[slot].set(start + jnp.arange(block), mode='drop')
    count = jnp.minimum(count + jnp.sum(keep), max_keep)
    return start + block, count, kept_boxes, kept_labels, kept_rank

  state = (jnp.int32(0), jnp.int32(0), jnp.zeros((max_keep, 4), jnp.float32),
           jnp.zeros((max_keep,), sorted_labels.dtype),
           jnp.zeros((max_keep,), jnp.int32))
  _, count, _, _, kept_rank = jax.lax.while_loop(not_done, visit_block, state)
  kept = jnp.arange(max_keep) < count
  index = jnp.where(kept, order[jnp.minimum(kept_rank, num - 1)], 0)
  return index.astype(jnp.int32), kept


def mask_log_probability(pixel_embedding, embedding, margin, boxes, valid,
                         padding: int):
  """Mask log-probability maps of one image's detections.

  Args:
    pixel_embedding: [h4, w4, D] stride-4 pixel embedding p.
    embedding, margin: [N, D] proposal embeddings q and margins m (> 0).
    boxes: [N, 4] xyxy input pixels; valid: [N] bool.
    padding: stride-4 cells added around each box.
  Returns:
    [N, h4, w4] float32: -sum_d m_d (p_d - q_d)^2 inside each padded box,
    OUTSIDE_LOGPROB elsewhere and for invalid detections.
  """
  height, width, dim = pixel_embedding.shape
  pixel = pixel_embedding.astype(jnp.float32)
  logprob = 0.0
  for d in range(dim):  # One [N, h4, w4] map per channel: no [.., D] temporary.
    difference = pixel[None, :, :, d] - embedding[:, None, None, d]
    logprob = logprob - margin[:, None, None, d] * difference * difference
  cells = (boxes / MASK_STRIDE).astype(jnp.int32)  # Truncates, as .int().
  x0 = jnp.maximum(cells[:, 0] - padding, 0)[:, None, None]
  y0 = jnp.maximum(cells[:, 1] - padding, 0)[:, None, None]
  x1 = jnp.minimum(cells[:, 2] + padding, width)[:, None, None]
  y1 = jnp.minimum(cells[:, 3] + padding, height)[:, None, None]
  ys = jnp.arange(height)[None, :, None]
  xs = jnp.arange(width)[None, None, :]
  inside = (xs >= x0) & (xs < x1) & (ys >= y0) & (ys < y1)
  inside = inside & valid[:, None, None]
  return jnp.where(inside, logprob, OUTSIDE_LOGPROB)


def _candidates_of_all_levels(outputs, image_hw, settings: DetectSettings):
  """Per-level candidates concatenated: dict of [B, K, ...] arrays."""
  _, mask_h, mask_w, _ = outputs['pixel_embedding'].shape
  canvas = (mask_h * MASK_STRIDE, mask_w * MASK_STRIDE)
  xy, _, _ = locations(*canvas, settings.strides)
  num_locations = outputs['cls_logits'].shape[1]
  if len(xy) != num_locations:
    raise ValueError(f'{num_locations} locations in the outputs, but a '
                     f'{canvas[0]}x{canvas[1]} canvas has {len(xy)}')
  levels, start = [], 0
  for stride, (h, w) in zip(settings.strides, level_shapes(*canvas,
                                                           settings.strides)):
    part = slice(start, start + h * w)
    found = level_candidates(
        outputs['cls_logits'][:, part], outputs['box_regression'][:, part],
        outputs['centerness'][:, part], xy[part], stride, image_hw,
        settings.pre_nms_top_n, settings.score_threshold)
    found['locations'] = found['locations'] + start
    levels.append(found)
    start += h * w
  return {key: jnp.concatenate([found[key] for found in levels], axis=1)
          for key in levels[0]}


@functools.partial(jax.jit, static_argnames=('settings',))
def detect(outputs: dict, image_hw, settings: DetectSettings = DetectSettings()):
  """Detections and mask log-probabilities of a batch, on the device.

  Args:
    outputs: the EmbedMask outputs of canvases [B, H, W, 3]: 'cls_logits'
      [B, L, C], 'box_regression' [B, L, 4] (ltrb, stride units),
      'centerness' [B, L] logits, 'proposal_embedding' and 'proposal_margin'
      [B, L, D], 'pixel_embedding' [B, H/4, W/4, D]; L over P3..P7 in
      fcos_geometry order.
    image_hw: [B, 2] int valid (resized, unpadded) (h, w) of each image.
    settings: DetectSettings (static).
  Returns:
    dict, best first per image, n = settings.detections_per_image:
    'boxes' [B, n, 4] xyxy input pixels, 'scores' [B, n], 'labels' [B, n]
    int32 in 0..C-1, 'valid' [B, n] bool (entries past the detections found
    are zeros), 'mask_logprob' [B, n, H/4, W/4] float32.
  """
  image_hw = jnp.asarray(image_hw)
  found = _candidates_of_all_levels(outputs, image_hw, settings)
  nms = functools.partial(class_aware_nms,
                          iou_threshold=settings.nms_threshold,
                          max_keep=settings.detections_per_image,
                          block=settings.nms_block)
  index, kept = jax.vmap(nms)(found['boxes'], found['scores'],
                              found['labels'], found['valid'])

  def pick(values):  # [B, K, ...] -> [B, n, ...], zeros where not kept.
    picked = jnp.take_along_axis(
        values, index.reshape(index.shape + (1,) * (values.ndim - 2)), axis=1)
    return jnp.where(kept.reshape(kept.shape + (1,) * (values.ndim - 2)),
                     picked, jnp.zeros((), values.dtype))

  location = pick(found['locations'])
  embedding = jnp.take_along_axis(
      outputs['proposal_embedding'].astype(jnp.float32), location[..., None],
      axis=1)
  margin = jnp.take_along_axis(
      outputs['proposal_margin'].astype(jnp.float32), location[..., None],
      axis=1)
  boxes = pick(found['boxes'])
  masks = jax.vmap(functools.partial(
      mask_log_probability, padding=settings.mask_box_padding))(
          outputs['pixel_embedding'], embedding, margin, boxes, kept)
  return {'boxes': boxes, 'scores': pick(found['scores']),
          'labels': pick(found['labels']), 'valid': kept,
          'mask_logprob': masks}
