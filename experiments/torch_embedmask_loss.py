"""EmbedMask V3 training targets and losses in PyTorch, for experiments only.

Written from the reference's semantics (reference_embedmask.md sections 2 and
7, fcos_core's embed_mask/loss.py at HEAD), image by image as the reference
loops, sharing no code with deepmask_jax/train/embedmask_{targets,losses}.py:

  * FCOS targets: centre sampling (radius 1.5 strides, within the box), scale
    ranges with inclusive bounds, SAMPLE_IN_MASK, smallest +1-convention box
    area (first GT on ties), regression targets / stride;
  * focal loss (the CUDA kernel's formula; the reference's CPU path is
    broken) / max(num_pos, 1);
  * GIoU ((I + 1) / (U + 1)) weighted by centerness targets / their sum;
  * centerness BCE-with-logits (sum) / max(num_pos, 1);
  * mask loss: per GT the assigned location whose detached decoded box has the
    best +1-convention IoU (first on ties), P = exp(-sum_d m_d (p_d - q_d)^2)
    on the whole stride-4 map, P clamped to [1e-9, 1 - 1e-9] (the upper clamp
    is 1.0 in float32, as in the reference), logit, Lovasz hinge, mean over the
    image's GTs, summed over images / N, x 0.5.

Inputs are the numpy batches of deepmask_jax/families/embedmask/random_batches.py (or the
detection pipeline): boxes / classes / valid [N, M], masks [N, M, H/4, W/4]
(already the stride-4 targets that prepare_masks makes), mask_points
[N, M, L] (the GT mask at each location's pixel, SAMPLE_IN_MASK's test).
"""

import math

import torch
import torch.nn.functional as F

INF = 100000000.0  # The reference's "no GT" area.


def location_grid(height: int, width: int, strides, splits=(64, 128, 256, 512)):
  """(xy [L, 2], stride [L], lo [L], hi [L]) over P3..P7, level-major."""
  xy, stride_of, lo, hi = [], [], [], []
  bounds = [-1.0] + list(splits) + [INF]
  h, w = height, width
  for level, stride in enumerate(strides):
    h, w = (height // stride, width // stride) if stride <= 32 else (
        (h + 1) // 2, (w + 1) // 2)
    ys, xs = torch.meshgrid(torch.arange(h) * stride + stride // 2,
                            torch.arange(w) * stride + stride // 2,
                            indexing='ij')
    xy.append(torch.stack([xs.flatten(), ys.flatten()], 1).float())
    for values, value in ((stride_of, stride), (lo, bounds[level]),
                          (hi, bounds[level + 1])):
      values.append(torch.full((h * w,), float(value)))
  return tuple(torch.cat(v) for v in (xy, stride_of, lo, hi))


def box_area(boxes):
  return (boxes[:, 2] - boxes[:, 0] + 1) * (boxes[:, 3] - boxes[:, 1] + 1)


def image_targets(grid, boxes, labels, in_mask, radius=1.5):
  """One image: labels [L] (0 background), matched [L] (-1 none), regression
  targets [L, 4] in stride units (to GT 0 for negatives)."""
  xy, stride, lo, hi = grid
  x, y = xy[:, :1], xy[:, 1:]
  ltrb = torch.stack([x - boxes[:, 0], y - boxes[:, 1], boxes[:, 2] - x,
                      boxes[:, 3] - y], 2)  # [L, M, 4]
  centre_x = (boxes[:, 0] + boxes[:, 2]) / 2
  centre_y = (boxes[:, 1] + boxes[:, 3]) / 2
  reach = radius * stride[:, None]
  region = torch.stack([torch.maximum(centre_x - reach, boxes[:, 0]),
                        torch.maximum(centre_y - reach, boxes[:, 1]),
                        torch.minimum(centre_x + reach, boxes[:, 2]),
                        torch.minimum(centre_y + reach, boxes[:, 3])], 2)
  inside = torch.stack([x - region[..., 0], y - region[..., 1],
                        region[..., 2] - x, region[..., 3] - y],
                       2).min(2).values > 0
  largest = ltrb.max(2).values
  cared = (largest >= lo[:, None]) & (largest <= hi[:, None])
  area = box_area(boxes)[None].repeat(len(xy), 1)
  area[~(inside & cared & in_mask)] = INF
  smallest, matched = area.min(1)
  none = smallest == INF
  targets = ltrb[torch.arange(len(xy)), matched] / stride[:, None]
  return (torch.where(none, 0, labels[matched]), torch.where(none, -1, matched),
          targets)


def sigmoid_focal_loss(logits, labels, gamma=2.0, alpha=0.25):
  """Summed; logits [P, C], labels [P] in 0..C (0 = background)."""
  one_hot = F.one_hot(labels, logits.shape[1] + 1)[:, 1:].to(logits.dtype)
  p = torch.sigmoid(logits)
  positive = (1 - p) ** gamma * F.logsigmoid(logits)
  negative = p ** gamma * F.logsigmoid(-logits)
  return -(one_hot * alpha * positive
           + (1 - one_hot) * (1 - alpha) * negative).sum()


def giou_loss(pred, target, weight):
  """IOULoss('giou'): sum of (1 - GIoU) * weight over ltrb rows [P, 4]."""
  area = lambda b: (b[:, 0] + b[:, 2]) * (b[:, 1] + b[:, 3])
  inner = area(torch.minimum(pred, target))
  union = area(pred) + area(target) - inner
  enclosing = area(torch.maximum(pred, target)) + 1e-7
  giou = (inner + 1.0) / (union + 1.0) - (enclosing - union) / enclosing
  losses = 1 - giou
  return (losses * weight).sum() if weight.sum() > 0 else losses.sum()


def centerness_targets(targets):
  left_right, top_bottom = targets[:, [0, 2]], targets[:, [1, 3]]
  return torch.sqrt(left_right.min(1).values / left_right.max(1).values
                    * top_bottom.min(1).values / top_bottom.max(1).values)


def box_iou(a, b):
  """+1-convention IoU of xyxy boxes [A, 4] x [B, 4] (boxlist_iou)."""
  top_left = torch.maximum(a[:, None, :2], b[None, :, :2])
  bottom_right = torch.minimum(a[:, None, 2:], b[None, :, 2:])
  size = (bottom_right - top_left + 1).clamp(min=0)
  inter = size[..., 0] * size[..., 1]
  return inter / (box_area(a)[:, None] + box_area(b)[None] - inter)


def lovasz_hinge(logits, labels):
  """Binary Lovasz hinge of one instance, logits and labels [P]."""
  errors = 1.0 - logits * (2.0 * labels - 1.0)
  errors_sorted, order = torch.sort(errors, descending=True, stable=True)
  ordered = labels[order]
  positives = ordered.sum()
  jaccard = 1.0 - (positives - ordered.cumsum(0)) / (
      positives + (1.0 - ordered).cumsum(0))
  grad = torch.cat([jaccard[:1], jaccard[1:] - jaccard[:-1]])
  return torch.dot(F.relu(errors_sorted), grad)


def image_mask_loss(pixel, embedding, margin, regression, matched, grid, boxes,
                    masks, log_space=False):
  """Mean Lovasz hinge over the GTs of one image that have a positive.

  pixel [D, h, w] at stride 4; embedding, margin [L, D]; regression [L, 4].
  """
  xy, stride = grid[0], grid[1]
  distances = regression.detach() * stride[:, None]
  decoded = torch.cat([xy - distances[:, :2], xy + distances[:, 2:]], 1)
  losses = []
  for gt in range(len(boxes)):
    assigned = torch.nonzero(matched == gt)[:, 0]
    if len(assigned) == 0:
      continue
    iou = box_iou(decoded[assigned], boxes[gt:gt + 1])[:, 0]
    best = assigned[torch.nonzero(iou == iou.max())[0, 0]]
    log_p = -(margin[best][:, None, None]
              * (pixel - embedding[best][:, None, None]) ** 2).sum(0)
    losses.append(lovasz_hinge(probability_logit(log_p.flatten(), log_space),
                               masks[gt].flatten().to(log_p.dtype)))
  return torch.stack(losses).mean() if losses else None


def probability_logit(log_p, log_space: bool):
  """logit(P) of log P: as the reference (P = exp(log P) clamped to
  [1e-9, 1 - 1e-9], log P - log(1 - P), in float32), or in log space with
  log P clamped to [log 1e-9, -1e-9] (what our JAX loss computes)."""
  if log_space:
    log_p = log_p.clamp(min=math.log(1e-9), max=-1e-9)
    return log_p - torch.log(-torch.expm1(log_p))
  p = torch.exp(log_p).clamp(min=1e-9, max=1 - 1e-9)
  return torch.log(p) - torch.log(1 - p)


def embedmask_losses(outputs: dict, batch: dict, strides, focal=(2.0, 0.25),
                     mask_weight=0.5, log_space_logit=False) -> dict:
  """{'cls', 'reg', 'centerness', 'mask'} of EmbedMask.forward's outputs."""
  height, width = batch['image'].shape[1:3]
  grid = location_grid(height, width, strides)
  count = outputs['cls_logits'].shape[0]
  labels, matched, targets = [], [], []
  for i in range(count):
    valid = torch.as_tensor(batch['valid'][i])
    boxes = torch.as_tensor(batch['boxes'][i])[valid]
    in_mask = torch.as_tensor(batch['mask_points'][i])[valid].T
    image_labels = torch.as_tensor(batch['classes'][i]).long()[valid] + 1
    for kept, value in zip((labels, matched, targets),
                           image_targets(grid, boxes, image_labels, in_mask)):
      kept.append(value)
  labels_flat = torch.cat(labels)
  positive = torch.nonzero(labels_flat > 0)[:, 0]
  num_pos = max(float(len(positive)), 1.0)
  losses = {'cls': sigmoid_focal_loss(
      outputs['cls_logits'].flatten(0, 1), labels_flat, *focal) / num_pos}
  regression = outputs['box_regression'].flatten(0, 1)[positive]
  centerness = outputs['centerness'].flatten()[positive]
  if len(positive):
    reg_targets = torch.cat(targets)[positive]
    ctr = centerness_targets(reg_targets)
    losses['reg'] = giou_loss(regression, reg_targets, ctr) / ctr.sum().item()
    losses['centerness'] = F.binary_cross_entropy_with_logits(
        centerness, ctr, reduction='sum') / num_pos
  else:
    losses['reg'], losses['centerness'] = regression.sum(), centerness.sum()
  pixel = F.interpolate(outputs['pixel_embedding'], scale_factor=2,
                        mode='bilinear', align_corners=False)
  mask = pixel.new_zeros(())
  for i in range(count):
    valid = torch.as_tensor(batch['valid'][i])
    image = image_mask_loss(
        pixel[i], outputs['proposal_embedding'][i],
        outputs['proposal_margin'][i], outputs['box_regression'][i],
        matched[i], grid, torch.as_tensor(batch['boxes'][i])[valid],
        torch.as_tensor(batch['masks'][i])[valid], log_space_logit)
    mask = mask if image is None else mask + image
  losses['mask'] = mask / count * mask_weight
  return losses
