"""Box AP by object size when boxes and masks are equally wrong (no model).

Each ground-truth object of a COCO json gets a detection whose box and mask
are the object's own, moved by one random scale-and-shift map (sigma relative
to the object's size), plus a looser duplicate (3 sigma, lower score: class-
aware NMS at IoU 0.6 keeps such boxes). COCOeval then scores the same
detections as boxes and as masks. A ground truth's size is its segment area
for both, but an unmatched detection's size (a duplicate, or one below the
IoU threshold) is its box area for bbox and its mask area for segm: the box
of a medium object that covers more than 96^2 pixels is a large false
positive for bbox AP_large, while its mask, smaller than its box, usually is
no large one. On the synthetic val set (108 of its 393 medium objects have
such boxes, against 52 large objects) bbox AP_large then trails bbox
AP_small / AP_medium and segm AP_large, with identical geometry.

  python experiments/ap_by_size_protocol.py \
      --json=data/synthetic/annotations/instances_val.json
"""

import contextlib
import io

from absl import app
from absl import flags
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

flags.DEFINE_string('json', 'data/synthetic/annotations/instances_val.json',
                    'COCO instances json (masks are read from it).')
flags.DEFINE_list('sigmas', ['0.03', '0.06'], 'Relative geometric errors.')
flags.DEFINE_bool('duplicates', True, 'Add a looser, lower-scored duplicate.')
flags.DEFINE_integer('seed', 0, 'Random seed.')


def moved(coco: COCO, annotation: dict, sigma: float, rng):
  """(xywh box, RLE mask) of the object after one random scale and shift."""
  x, y, w, h = annotation['bbox']
  mask = coco.annToMask(annotation)
  sx, sy = np.exp(rng.normal(0, sigma, 2))
  dx, dy = rng.normal(0, sigma, 2) * (w, h)
  cx, cy = x + w / 2, y + h / 2
  # PIL maps each output pixel back: input = (output - c - d) / s + c.
  inverse = (1 / sx, 0, cx - (cx + dx) / sx, 0, 1 / sy, cy - (cy + dy) / sy)
  warped = np.asarray(Image.fromarray(mask * 255).transform(
      mask.shape[::-1], Image.AFFINE, inverse, Image.BILINEAR)) >= 128
  rle = mask_utils.encode(np.asfortranarray(warped.astype(np.uint8)))
  rle['counts'] = rle['counts'].decode('ascii')
  return [cx + dx - sx * w / 2, cy + dy - sy * h / 2, sx * w, sy * h], rle


def ap_by_size(coco: COCO, results: list, iou_type: str) -> str:
  with contextlib.redirect_stdout(io.StringIO()):
    evaluator = COCOeval(coco, coco.loadRes(results), iou_type)
    evaluator.evaluate()
    evaluator.accumulate()
    evaluator.summarize()
  stats = evaluator.stats
  return (f'{iou_type} AP {stats[0]:.3f} small {stats[3]:.3f} '
          f'medium {stats[4]:.3f} large {stats[5]:.3f}')


def main(argv):
  del argv
  with contextlib.redirect_stdout(io.StringIO()):
    coco = COCO(flags.FLAGS.json)
  rng = np.random.default_rng(flags.FLAGS.seed)
  for sigma in map(float, flags.FLAGS.sigmas):
    boxes, masks = [], []
    for annotation in coco.dataset['annotations']:
      score = rng.uniform(0.3, 1)
      tries = [(sigma, score)]
      if flags.FLAGS.duplicates:
        tries.append((3 * sigma, score * rng.uniform(0.3, 0.9)))
      for error, value in tries:
        box, rle = moved(coco, annotation, error, rng)
        common = {'image_id': annotation['image_id'], 'score': value,
                  'category_id': annotation['category_id']}
        boxes.append(dict(common, bbox=box))
        masks.append(dict(common, segmentation=rle))
    print(f'sigma {sigma}: {ap_by_size(coco, boxes, "bbox")} | '
          f'{ap_by_size(coco, masks, "segm")}')


if __name__ == '__main__':
  app.run(main)
