"""Small hand-made COCO ground truths for the evaluation tests."""

import contextlib
import io

import numpy as np
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO


def rectangle_rle(height, width, x, y, w, h):
  """RLE (counts as str) of the pixels [y, y + h) x [x, x + w)."""
  mask = np.zeros((height, width), np.uint8, order='F')
  mask[y:y + h, x:x + w] = 1
  rle = mask_utils.encode(mask)
  return {'size': rle['size'], 'counts': rle['counts'].decode('ascii')}


def rectangle_coco(images, objects, categories=(3, 5)):
  """A COCO ground truth of axis-aligned rectangles.

  Args:
    images: [(image_id, height, width)].
    objects: [(image_id, x, y, w, h)], exact RLE masks, not crowd.
    categories: category ids; objects cycle through them.
  """
  sizes = {i: (h, w) for i, h, w in images}
  annotations = []
  for index, (image_id, x, y, w, h) in enumerate(objects):
    annotations.append({
        'id': index + 1, 'image_id': image_id,
        'category_id': categories[index % len(categories)],
        'segmentation': rectangle_rle(*sizes[image_id], x, y, w, h),
        'area': float(w * h), 'bbox': [x, y, w, h], 'iscrowd': 0})
  coco = COCO()
  coco.dataset = {
      'images': [{'id': i, 'height': h, 'width': w, 'file_name': f'{i}.jpg'}
                 for i, h, w in images],
      'annotations': annotations,
      'categories': [{'id': c, 'name': f'c{c}'} for c in categories]}
  with contextlib.redirect_stdout(io.StringIO()):
    coco.createIndex()
  return coco
