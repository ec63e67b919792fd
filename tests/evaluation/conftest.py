"""Small hand-made COCO ground truths for the evaluation tests."""

import contextlib
import io
import json
import pathlib

import numpy as np
from PIL import Image
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


def write_tiny_split(root, categories, missing=(), side=64):
  """A COCO-format split of two `side`-px images with one rectangle each.

  Args:
    root: folder to write into (json at root/val.json, images in
      root/images).
    categories: [(id, name)]; the objects take the first two.
    missing: file names listed in the json but not written.
  Returns:
    (json path, image folder) as str.
  """
  root = pathlib.Path(root)
  (root / 'images').mkdir(parents=True, exist_ok=True)
  rng = np.random.default_rng(0)
  images, annotations = [], []
  for index, name in enumerate(['first.png', 'second.png'] + list(missing)):
    image_id = index + 1
    images.append({'id': image_id, 'file_name': name, 'height': side,
                   'width': side})
    if name not in missing:
      Image.fromarray(rng.integers(0, 256, (side, side, 3), np.uint8)).save(
          root / 'images' / name)
    x = y = 8 + 4 * index
    annotations.append({
        'id': image_id, 'image_id': image_id,
        'category_id': categories[index % 2][0], 'iscrowd': 0,
        'bbox': [x, y, 24, 24], 'area': 576.0,
        'segmentation': [[x, y, x + 24, y, x + 24, y + 24, x, y + 24]]})
  with open(root / 'val.json', 'w') as f:
    json.dump({'images': images, 'annotations': annotations,
               'categories': [{'id': i, 'name': n} for i, n in categories]}, f)
  return str(root / 'val.json'), str(root / 'images')
