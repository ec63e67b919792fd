"""A tiny EmbedMask memorises two synthetic images: box and mask AP >= 0.9.

Two 256-px images, three classes (ellipse, rectangle, triangle) with objects
of every COCO size range (small < 32^2 px, large > 96^2 px) and positives on
every level P3..P7: the FCOS scale ranges are the reference's divided by 4,
(16, 32, 64, 128), so a 256-px canvas spreads its objects over the five levels
as an 800-px image does with (64, 128, 256, 512). The family's own train step
(Adam, no flip) fits batches built here in the input pipeline's layout, and
the family's evaluator (InstanceSegmenter, then COCOeval through
evaluation/coco_instances.py, as `--config.mode=eval`) scores the same images.

Masks come out at stride 4, so small objects cost mask IoU: their edges fall
between cells. The small objects here are round (30-35 px ellipses; pasting
the exact stride-4 mask targets back gives segm AP 0.95 on this set, the
trained model about 0.95). With a 30-px rectangle and a 40-px triangle as the
small objects instead, that ceiling is 0.86 and training plateaus at segm AP
0.90-0.92 (AP_small 0.83): the architecture's limit, not a fitting failure.
"""

import json

import jax
import numpy as np
from PIL import Image, ImageDraw
from pycocotools import mask as mask_utils

from deepmask_jax.families.embedmask.sampler import reference_boxes
from deepmask_jax.families import bind
from deepmask_jax.families.embedmask.segmenter import InstanceSegmenter
from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.families.embedmask.targets import fcos_targets
from deepmask_jax.train.trainer import setup
from tests.families.embedmask.test_family import tiny_embedmask_config

SIDE = 256
CLASSES = ('ellipse', 'rectangle', 'triangle')
COLOURS = ((220, 40, 40), (40, 200, 60), (50, 70, 230))
# Per image, drawn in order (later ones occlude): (class, x0, y0, x1, y1).
IMAGES = (
    ((0, 8, 8, 248, 240), (1, 60, 150, 120, 210), (2, 176, 10, 240, 74),
     (0, 29, 29, 59, 59)),
    ((2, 20, 40, 170, 200), (0, 180, 150, 236, 210), (1, 190, 30, 230, 70),
     (0, 116, 212, 150, 246)),
)
STEPS = 200


def shape_mask(kind: int, box) -> np.ndarray:
  """bool [SIDE, SIDE]: an ellipse, rectangle or triangle filling `box`."""
  canvas = Image.new('L', (SIDE, SIDE))
  draw = ImageDraw.Draw(canvas)
  x0, y0, x1, y1 = box
  if kind == 0:
    draw.ellipse(box, fill=1)
  elif kind == 1:
    draw.rectangle(box, fill=1)
  else:
    draw.polygon([(x0, y1), ((x0 + x1) / 2, y0), (x1, y1)], fill=1)
  return np.asarray(canvas, bool)


def render(objects, seed: int):
  """(uint8 [SIDE, SIDE, 3] image, visible bool masks) of one image."""
  rng = np.random.default_rng(seed)
  image = np.clip(128 + 20 * rng.standard_normal((SIDE, SIDE, 3)), 0, 255)
  masks = [shape_mask(kind, box) for kind, *box in objects]
  visible, covered = [None] * len(masks), np.zeros((SIDE, SIDE), bool)
  for i in range(len(masks) - 1, -1, -1):
    visible[i] = masks[i] & ~covered
    covered |= masks[i]
  for (kind, *_), mask in zip(objects, masks):
    image[mask] = COLOURS[kind]
  return image.astype(np.uint8), visible


def write_coco(root, samples) -> None:
  """The images as PNGs (lossless: training sees what evaluation reads) and
  their COCO json (visible masks as RLEs, bbox and area from them)."""
  (root / 'images').mkdir()
  images, annotations = [], []
  for image_id, (image, masks) in enumerate(samples, start=1):
    Image.fromarray(image).save(root / 'images' / f'{image_id}.png')
    images.append({'id': image_id, 'file_name': f'{image_id}.png',
                   'height': SIDE, 'width': SIDE})
    for (kind, *_), mask in zip(IMAGES[image_id - 1], masks):
      rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
      annotations.append({
          'id': len(annotations) + 1, 'image_id': image_id,
          'category_id': kind + 1, 'iscrowd': 0,
          'area': float(mask_utils.area(rle)),
          'bbox': [float(v) for v in mask_utils.toBbox(rle)],
          'segmentation': {'size': rle['size'],
                           'counts': rle['counts'].decode('ascii')}})
  (root / 'gt.json').write_text(json.dumps({
      'images': images, 'annotations': annotations,
      'categories': [{'id': k + 1, 'name': name}
                     for k, name in enumerate(CLASSES)]}))


def training_batch(config, samples, segmenter) -> dict:
  """The batch detection_pipeline.py would make of the images (no resize:
  they are already at min_size; no flip), images normalised by the API."""
  xy, _, _ = fcos_geometry.locations(SIDE, SIDE, config.embedmask.strides)
  count, cap = len(samples), config.detection.max_instances
  batch = {'image': np.stack([segmenter.prepare(image)[0][0]
                              for image, _ in samples]),
           'boxes': np.zeros((count, cap, 4), np.float32),
           'classes': np.zeros((count, cap), np.int32),
           'valid': np.zeros((count, cap), bool),
           'masks': np.zeros((count, cap, SIDE // 4, SIDE // 4), np.uint8),
           'mask_points': np.zeros((count, cap, len(xy)), bool)}
  reach = max(int(xy.max()) + 1, SIDE)  # Locations may lie past the image.
  for i, (_, masks) in enumerate(samples):
    for j, ((kind, *_), mask) in enumerate(zip(IMAGES[i], masks)):
      rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
      boxes, _ = reference_boxes(mask_utils.toBbox(rle)[None],
                                 np.array([[SIDE, SIDE]]))
      batch['boxes'][i, j], batch['classes'][i, j] = boxes[0], kind
      batch['valid'][i, j] = True
      # prepare_masks at a factor of 4: rows and columns 4i+1, 4i+2 or-ed.
      cells = mask.reshape(SIDE // 4, 4, SIDE // 4, 4)[:, 1:3, :, 1:3]
      batch['masks'][i, j] = cells.any(axis=(1, 3))
      padded = np.zeros((reach, reach), bool)
      padded[:SIDE, :SIDE] = mask
      batch['mask_points'][i, j] = padded[xy[:, 1].astype(int),
                                          xy[:, 0].astype(int)]
  return batch


def positive_levels(config, batch) -> set:
  """The FPN levels (0 = P3) holding a positive location of some object."""
  xy, stride, level = fcos_geometry.locations(SIDE, SIDE,
                                              config.embedmask.strides)
  targets = jax.vmap(lambda b, c, v, p: fcos_targets(
      b, c, v, p, xy, stride, level,
      scale_ranges=tuple(config.embedmask.scale_ranges)))(
          batch['boxes'], batch['classes'], batch['valid'],
          batch['mask_points'])
  return set(level[np.asarray(targets['labels']).max(axis=0) > 0].tolist())


def overfit_config(root):
  """The tiny family config, set up for these images in `root`."""
  return tiny_embedmask_config(**{
      'trunk.widths': (8, 16, 16, 16), 'embedmask.fpn_channels': 16,
      'embedmask.embed_dim': 16, 'embedmask.num_classes': len(CLASSES),
      'embedmask.category_ids': (1, 2, 3),
      'embedmask.category_names': CLASSES, 'embedmask.freeze_at': 0,
      'embedmask.scale_ranges': (16, 32, 64, 128),
      'detection.min_size': SIDE, 'detection.max_size': SIDE,
      'detection.max_instances': 4, 'detection.flip': False,
      'optimizer': 'adam', 'weight_decay': 0.0, 'batch_size': len(IMAGES),
      'schedule.reference_batch': len(IMAGES),
      'schedule.warmup_steps': 10, 'schedule.boundaries': (150,),
      'schedule.learning_rates': (5e-3, 5e-4),
      'schedule.total_steps': STEPS, 'data.root': str(root),
      'data.val_json': 'gt.json', 'data.val_images': 'images',
      'evaluation.max_images': 0})


def test_tiny_embedmask_memorises_every_size_and_level(tmp_path):
  samples = [render(objects, seed) for seed, objects in enumerate(IMAGES)]
  write_coco(tmp_path, samples)
  config = overfit_config(tmp_path)
  family = bind(config)
  model, runner, state = setup(family, jax.devices()[:1])
  variables = {'params': state.params, 'constants': state.constants}
  batch = training_batch(config, samples,
                         InstanceSegmenter(model, variables, config))
  # The set covers what it claims: every class, size range and level.
  areas = [mask.sum() for _, masks in samples for mask in masks]
  assert min(areas) < 32 ** 2 < 96 ** 2 < max(areas)
  assert any(32 ** 2 < area < 96 ** 2 for area in areas)
  assert {kind for objects in IMAGES for kind, *_ in objects} == {0, 1, 2}
  assert positive_levels(config, batch) == {0, 1, 2, 3, 4}

  state = runner.replicate(state)
  for _ in range(STEPS):
    state, metrics = runner.step(state, batch, 'instances')
  assert np.isfinite(float(metrics['loss']))
  variables = jax.device_get({'params': state.params,
                              'constants': state.constants})
  figures = family.evaluate(model, variables, str(tmp_path / 'eval'))
  assert figures['num_images'] == len(IMAGES)
  assert figures['bbox']['AP'] >= 0.9, figures['bbox']
  for size in ('AP_small', 'AP_medium', 'AP_large'):  # P3 to P7 boxes alike.
    assert figures['bbox'][size] >= 0.9, figures['bbox']
  assert figures['segm']['AP'] >= 0.9, figures['segm']
