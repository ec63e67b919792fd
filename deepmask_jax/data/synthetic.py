"""The synthetic default dataset: textured shapes on textured backgrounds.

Writes a COCO-format dataset the project can train and test on without
downloading COCO:

  root/annotations/instances_train.json, root/annotations/instances_val.json
  root/train/*.jpg, root/val/*.jpg

Six shape categories (ellipse, rectangle, triangle, star, ring, blob) with
random textures (solid, noise, stripes, checker, gradient, smooth noise), 1-6
per image, max side from 10% to 70% of the image. Later shapes occlude earlier
ones; masks, boxes and areas describe the visible pixels, and shapes left less
than half visible are not drawn at all, so every drawn pixel is annotated.
Every shape is rasterised with pycocotools, so the stored segmentation
(a polygon when the shape is whole and inside the image, else an RLE with str
counts) decodes to exactly the drawn mask. Deterministic for a seed.

  python -m deepmask_jax.data.synthetic --out DIR --train N --val N --size S

No TensorFlow here.
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

SPLITS = ('train', 'val')
CATEGORIES = ('ellipse', 'rectangle', 'triangle', 'star', 'ring', 'blob')
TRAIN_JSON = 'annotations/instances_train.json'
VAL_JSON = 'annotations/instances_val.json'
TRAIN_IMAGES = 'train'
VAL_IMAGES = 'val'
DEFAULT_TRAIN_IMAGES, DEFAULT_VAL_IMAGES, DEFAULT_IMAGE_SIZE = 2000, 200, 256

_MIN_VISIBLE_FRACTION = 0.5  # Shapes hidden more than this are not drawn.
_MIN_PIXELS = 16  # Shapes smaller than this (inside the image) are not drawn.
_MIN_SIDE_PX = 8.0
_MIN_IMAGE_SIZE = 16  # Below this a shape may never cover _MIN_PIXELS.
_SIZE_RANGE = (0.1, 0.7)  # Max side as a fraction of the image side.
_VAL_ID_OFFSET = 1_000_000  # Keeps val image and annotation ids apart from train's.
_JPEG_QUALITY = 95


# ----------------------------------------------------------------------------
# Shapes: each returns (outer polygon (N, 2) xy, hole polygon or None).


def _regular(center, radii, angles):
  return np.stack([center[0] + radii * np.cos(angles), center[1] + radii * np.sin(angles)], -1)


def _ellipse(rng, center, size, rotation):
  t = np.linspace(0, 2 * np.pi, 40, endpoint=False)
  a, b = size / 2, size / 2 * rng.uniform(0.4, 1.0)
  x, y = a * np.cos(t), b * np.sin(t)
  c, s = np.cos(rotation), np.sin(rotation)
  return np.stack([center[0] + c * x - s * y, center[1] + s * x + c * y], -1), None


def _rectangle(rng, center, size, rotation):
  w, h = size, size * rng.uniform(0.3, 1.0)
  corners = np.array([[-w, -h], [w, -h], [w, h], [-w, h]]) / 2
  c, s = np.cos(rotation), np.sin(rotation)
  return corners @ np.array([[c, s], [-s, c]]) + center, None


def _triangle(rng, center, size, rotation):
  angles = rotation + np.array([0, 2, 4]) * np.pi / 3 + rng.uniform(-0.4, 0.4, 3)
  return _regular(center, size / 2, angles), None


def _star(rng, center, size, rotation):
  points = int(rng.integers(5, 8))
  angles = rotation + np.arange(2 * points) * np.pi / points
  radii = np.where(np.arange(2 * points) % 2 == 0, 1.0, rng.uniform(0.35, 0.6)) * size / 2
  return _regular(center, radii, angles), None


def _ring(rng, center, size, rotation):
  outer, _ = _ellipse(rng, center, size, rotation)
  inner_scale = rng.uniform(0.4, 0.7)
  return outer, center + (outer - center) * inner_scale


def _blob(rng, center, size, rotation):
  count = int(rng.integers(8, 15))
  angles = rotation + np.sort(rng.uniform(0, 2 * np.pi, count))
  radii = rng.uniform(0.5, 1.0, count)
  radii = (radii + np.roll(radii, 1) + np.roll(radii, -1)) / 3  # Smoother outline.
  return _regular(center, radii / radii.max() * size / 2, angles), None


_SHAPES = (_ellipse, _rectangle, _triangle, _star, _ring, _blob)


# ----------------------------------------------------------------------------
# Textures: float32 (H, W, 3) in [0, 255].


def _colour(rng):
  return rng.uniform(0, 255, 3).astype(np.float32)


def _texture(rng, yy, xx):
  """A random fill over the coordinate grids yy, xx (H, W)."""
  kind = rng.integers(6)
  a, b = _colour(rng), _colour(rng)
  height, width = yy.shape
  if kind == 0:  # Solid.
    return np.broadcast_to(a, (height, width, 3))
  if kind == 1:  # Colour noise.
    noise = rng.standard_normal((height, width, 1), dtype=np.float32)  # Luminance noise.
    return np.clip(a + 30 * noise, 0, 255)
  theta = rng.uniform(0, np.pi)
  along = xx * np.cos(theta) + yy * np.sin(theta)
  if kind == 2:  # Stripes.
    weight = (np.floor(along / rng.uniform(3, 16)) % 2)[..., None]
  elif kind == 3:  # Checker.
    across = -xx * np.sin(theta) + yy * np.cos(theta)
    cell = rng.uniform(4, 20)
    weight = ((np.floor(along / cell) + np.floor(across / cell)) % 2)[..., None]
  elif kind == 4:  # Linear gradient.
    weight = ((along - along.min()) / max(np.ptp(along), 1e-6))[..., None]
  else:  # Smooth noise: a small random field upsampled.
    coarse = rng.uniform(0, 1, (4, 4)).astype(np.float32)
    weight = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BILINEAR))[..., None]
  return a * (1 - weight) + b * weight


# ----------------------------------------------------------------------------
# One image.


def _rasterize(polygon, size):
  rle = mask_utils.frPyObjects([polygon.ravel().tolist()], size, size)
  return mask_utils.decode(rle)[..., 0].astype(bool)


def _random_shape(rng, category, image_size):
  """Returns (category, polygon, hole, full mask); coordinates rounded to 0.01."""
  side = max(image_size * np.exp(rng.uniform(*np.log(_SIZE_RANGE))), _MIN_SIDE_PX)
  center = rng.uniform(0.1, 0.9, 2) * image_size
  outer, hole = _SHAPES[category](rng, center, side, rng.uniform(0, 2 * np.pi))
  # The json stores the rounded coordinates, so rasterise exactly those.
  outer = np.round(outer, 2)
  mask = _rasterize(outer, image_size)
  if hole is not None:
    hole = np.round(hole, 2)
    mask &= ~_rasterize(hole, image_size)
  return category, outer, hole, mask


def _box_slices(mask):
  rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
  return slice(rows[0], rows[-1] + 1), slice(cols[0], cols[-1] + 1)


def _visible_masks(masks):
  """Each mask minus the union of the masks drawn after it."""
  visible, covered = [None] * len(masks), np.zeros_like(masks[0])
  for i in range(len(masks) - 1, -1, -1):
    visible[i] = masks[i] & ~covered
    covered |= masks[i]
  return visible


def render_image(rng, image_size, top_category):
  """Draws one image.

  Args:
    rng: np.random.Generator.
    image_size: side of the square image in pixels.
    top_category: category (index into CATEGORIES) of the last-drawn shape,
      which is never occluded; cycling it makes every split of at least
      len(CATEGORIES) images cover all categories.

  Returns:
    image: uint8 (S, S, 3) RGB.
    objects: in drawing order, dicts with 'category' (index into CATEGORIES),
      'polygon' ((N, 2) xy, or None when the segmentation must be an RLE),
      'mask' (bool (S, S) visible pixels) and 'full_area' (pixels of the whole
      shape inside the image).
  """
  count = int(rng.integers(1, 7))
  shapes = [_random_shape(rng, int(c), image_size)
            for c in rng.integers(0, len(CATEGORIES), count - 1)]
  shapes = [s for s in shapes if s[3].sum() >= _MIN_PIXELS]
  top = _random_shape(rng, top_category, image_size)
  while top[3].sum() < _MIN_PIXELS:  # Rare: a small shape mostly off the image.
    top = _random_shape(rng, top_category, image_size)
  shapes.append(top)
  visible = _visible_masks([s[3] for s in shapes])
  # Removing a hidden shape only uncovers the ones below it, so one pass is enough.
  shapes = [s for s, v in zip(shapes, visible) if v.sum() >= _MIN_VISIBLE_FRACTION * s[3].sum()]
  yy, xx = np.mgrid[:image_size, :image_size].astype(np.float32)
  image = _texture(rng, yy, xx).copy()
  objects = []
  visible = _visible_masks([s[3] for s in shapes])
  for (category, outer, hole, mask), seen in zip(shapes, visible):
    box = _box_slices(mask)  # Texture only the shape's box: most of the time goes here.
    image[box][mask[box]] = _texture(rng, yy[box], xx[box])[mask[box]]
    whole_inside = outer.min() >= 0 and outer.max() <= image_size
    exact_polygon = hole is None and whole_inside and np.array_equal(seen, mask)
    objects.append({'category': category, 'polygon': outer if exact_polygon else None,
                    'mask': seen, 'full_area': int(mask.sum())})
  return np.clip(np.round(image), 0, 255).astype(np.uint8), objects


def render_example(seed, split, index, image_size):
  """Draws image `index` of `split` ('train' or 'val'), as `generate` does."""
  rng = np.random.default_rng([seed, SPLITS.index(split), index])
  return render_image(rng, image_size, index % len(CATEGORIES))


def _annotation(obj, ann_id, image_id):
  rle = mask_utils.encode(np.asfortranarray(obj['mask'].astype(np.uint8)))
  if obj['polygon'] is not None:
    segmentation = [obj['polygon'].ravel().tolist()]
  else:
    segmentation = {'size': rle['size'], 'counts': rle['counts'].decode('ascii')}
  return {'id': ann_id, 'image_id': image_id, 'category_id': obj['category'] + 1,
          'segmentation': segmentation, 'area': float(mask_utils.area(rle)),
          'bbox': [float(v) for v in mask_utils.toBbox(rle)], 'iscrowd': 0}


# ----------------------------------------------------------------------------
# Datasets.


def _write_split(root, split, num_images, image_size, seed):
  image_folder, json_name = {'train': (TRAIN_IMAGES, TRAIN_JSON),
                             'val': (VAL_IMAGES, VAL_JSON)}[split]
  os.makedirs(os.path.join(root, image_folder), exist_ok=True)
  images, annotations = [], []
  id_offset = SPLITS.index(split) * _VAL_ID_OFFSET
  for index in range(num_images):
    image, objects = render_example(seed, split, index, image_size)
    image_id = id_offset + index + 1
    file_name = f'{image_id:012d}.jpg'
    Image.fromarray(image).save(os.path.join(root, image_folder, file_name),
                                format='JPEG', quality=_JPEG_QUALITY,
                                # 4:4:4: chroma subsampling would blur colour edges
                                # off the mask boundaries.
                                subsampling=0)
    images.append({'id': image_id, 'file_name': file_name, 'height': image_size,
                   'width': image_size})
    for obj in objects:
      annotations.append(_annotation(obj, id_offset + len(annotations) + 1, image_id))
  data = {
      'info': {'description': 'deepmask_jax synthetic shapes', 'version': '1.0',
               'image_size': image_size, 'seed': seed},
      'licenses': [],
      'images': images,
      'annotations': annotations,
      'categories': [{'id': i + 1, 'name': name, 'supercategory': 'shape'}
                     for i, name in enumerate(CATEGORIES)],
  }
  json_path = os.path.join(root, json_name)
  os.makedirs(os.path.dirname(json_path), exist_ok=True)
  # Written last and atomically: an existing json means a complete split.
  with open(json_path + '.tmp', 'w') as f:
    json.dump(data, f)
  os.replace(json_path + '.tmp', json_path)
  return json_path


def generate(root, num_train, num_val, image_size=DEFAULT_IMAGE_SIZE, seed=0) -> dict[str, str]:
  """Writes the synthetic COCO-format dataset under root; returns the json paths."""
  if image_size < _MIN_IMAGE_SIZE:
    raise ValueError(f'synthetic image size must be at least {_MIN_IMAGE_SIZE} px, '
                     f'got {image_size}')
  return {
      'train': _write_split(root, 'train', num_train, image_size, seed),
      'val': _write_split(root, 'val', num_val, image_size, seed),
  }


def exists(root) -> bool:
  return all(os.path.isfile(os.path.join(root, name)) for name in (TRAIN_JSON, VAL_JSON))


def ensure_synthetic(data_config):
  """Generates the synthetic dataset into `data_config.root` when asked and absent.

  Does nothing unless `data_config.synthetic` is true. Points train_json,
  train_images, val_json and val_images at the synthetic layout. Counts and
  size of 0 mean 2000 / 200 / 256. An existing dataset is reused as it is.
  Returns data_config.
  """
  if not data_config.get('synthetic', False):
    return data_config
  data_config.train_json, data_config.train_images = TRAIN_JSON, TRAIN_IMAGES
  data_config.val_json, data_config.val_images = VAL_JSON, VAL_IMAGES
  if not exists(data_config.root):
    size = data_config.synthetic_image_size or DEFAULT_IMAGE_SIZE
    print(f'Generating the synthetic dataset ({size}x{size} px) in {data_config.root}',
          flush=True)
    generate(data_config.root,
             data_config.synthetic_train_images or DEFAULT_TRAIN_IMAGES,
             data_config.synthetic_val_images or DEFAULT_VAL_IMAGES,
             size, seed=data_config.get('synthetic_seed', 0))
  return data_config


def _define_flags():
  """CLI flags, defined only when run as a program (other CLIs import us)."""
  flags.DEFINE_string('out', None, 'Dataset root to write.', required=True)
  flags.DEFINE_integer('train', DEFAULT_TRAIN_IMAGES, 'Number of train images.')
  flags.DEFINE_integer('val', DEFAULT_VAL_IMAGES, 'Number of val images.')
  flags.DEFINE_integer('size', DEFAULT_IMAGE_SIZE, 'Image side in pixels.')
  flags.DEFINE_integer('seed', 0, 'Random seed.')


def main(argv):
  del argv
  f = flags.FLAGS
  paths = generate(f.out, f.train, f.val, f.size, f.seed)
  print('\n'.join(f'{split}: {path}' for split, path in paths.items()))


if __name__ == '__main__':
  _define_flags()
  app.run(main)
