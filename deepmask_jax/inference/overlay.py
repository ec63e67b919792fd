"""Overlays of the top proposals: tinted masks, outlines of their boxes."""

import colorsys

import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

TINT = 0.5  # Weight of a mask's colour over the image.


def palette(count: int) -> np.ndarray:
  """[count, 3] uint8 well-separated colours (golden-ratio hues)."""
  hues = (np.arange(count) * 0.618033988749895) % 1.0
  rgb = np.array([colorsys.hsv_to_rgb(h, 0.85, 1.0) for h in hues])
  return (rgb.reshape(-1, 3) * 255).astype(np.uint8)


def draw_overlay(image: np.ndarray, masks: np.ndarray, boxes: np.ndarray,
                 scores: np.ndarray, labels=None) -> np.ndarray:
  """The image with its proposals drawn, the best on top.

  Args:
    image: [H, W, 3] uint8 RGB.
    masks: [N, H, W] bool, best first.
    boxes: [N, 4] xywh.
    scores: [N].
    labels: optional [N] class names, written before the scores.
  Returns:
    [H, W, 3] uint8.
  """
  colours = palette(len(masks))
  canvas = image.astype(np.float32)
  for mask, colour in zip(masks[::-1], colours[::-1]):
    canvas[mask] = (1.0 - TINT) * canvas[mask] + TINT * colour
  picture = Image.fromarray(canvas.round().astype(np.uint8))
  draw = ImageDraw.Draw(picture)
  labels = [''] * len(scores) if labels is None else [f'{n} ' for n in labels]
  for box, score, label, colour in zip(boxes, scores, labels, colours):
    x, y, w, h = (float(v) for v in box)
    if w <= 0 or h <= 0:
      continue
    draw.rectangle([x, y, x + w - 1, y + h - 1], outline=tuple(colour))
    draw.text((x + 2, y + 1), f'{label}{score:.2f}', fill=tuple(colour))
  return np.asarray(picture)


def draw_encoded(image: np.ndarray, proposals, count: int,
                 names: dict | None = None) -> np.ndarray:
  """`draw_overlay` of the `count` best of an image's EncodedProposals.

  names: {category id: name}, written on class-aware results.
  """
  count = min(count, len(proposals.rles))
  if count:
    masks = mask_utils.decode(proposals.rles[:count]).transpose(2, 0, 1)
  else:
    masks = np.zeros((0,) + image.shape[:2], np.uint8)
  labels = (None if proposals.category_ids is None else
            [names[int(c)] for c in proposals.category_ids[:count]])
  return draw_overlay(image, masks.astype(bool), proposals.boxes[:count],
                      proposals.scores[:count], labels)


def save_overlay(path: str, image: np.ndarray, masks: np.ndarray,
                 boxes: np.ndarray, scores: np.ndarray, labels=None) -> None:
  """Writes `draw_overlay(...)` as a PNG."""
  Image.fromarray(draw_overlay(image, masks, boxes, scores, labels)).save(
      path, format='PNG')
