r"""Masks for a folder of images, any model family: COCO results JSON and overlays.

    python -m deepmask_jax.propose --model runs/sharpmask \
        --images 'photos/*.jpg' --out proposals/ [--num_proposals 1000] \
        [--zoom] [--overlays 20] [--categories instances_val2017.json]

--model is a model directory or a training workdir
(deepmask_jax/models/store.py) of any family: DeepMask/SharpMask give
class-agnostic proposals (category 1, 'object'), EmbedMask class-aware
detections with the dataset's category ids and names. --images is one image,
a folder (its image files, not recursive) or a glob. --categories names a
COCO json whose categories a class-aware model's results should carry (e.g.
the split they will be scored on): the same ids and names are used as they
are, the same names under other ids are mapped by name (one line says so),
anything else is an error before any image is read; class-agnostic models
do not use it (one line says so). Written to --out:
  proposals.json       COCO segm results: image_id, category_id, RLE
                       segmentation (counts as str), score; best first.
  proposals_bbox.json  the same results as boxes (xywh).
  images.json          {'images': [{id, file_name, height, width}],
                       'annotations': [], 'categories': [...]}: a COCO
                       file the results load against (COCO.loadRes).
  overlays/            <id>_<name>.png, the top --overlays results drawn,
                       with class names for class-aware models.
Unreadable files are reported by name and skipped. Runs on the GPU when JAX
has one, else on the CPU (--platform=cpu forces it).
"""

import collections
import json
import os
from typing import Sequence

from deepmask_jax import console  # pylint: disable=g-bad-import-order  # First: quiets TF.
from absl import app, flags
import jax
from PIL import Image
from tqdm import tqdm

from deepmask_jax import families
from deepmask_jax.data import coco_images
from deepmask_jax.data.coco_report import counted
from deepmask_jax.evaluation.categories import (CategoryCheck,
                                                check_output_categories)
from deepmask_jax.evaluation.results_json import (proposal_results,
                                                  write_results)
from deepmask_jax.inference.images import find_images, read_image
from deepmask_jax.inference.overlay import draw_encoded
from deepmask_jax.inference.streaming import prefetch

FLAGS = flags.FLAGS
flags.DEFINE_string('model', None, 'Model directory or training workdir.')
flags.DEFINE_string('images', None, 'An image, a folder of images or a glob.')
flags.DEFINE_string('out', None, 'Output folder.')
flags.DEFINE_integer('num_proposals', None, 'Results per image (default: '
                     "the model's own, 1000 proposals or 100 detections).")
flags.DEFINE_bool('zoom', None, 'Multi-scale pyramids: add the scale 2^1 '
                  '(finds smaller objects, about twice the time).')
flags.DEFINE_integer('overlays', 20, 'Proposals drawn on each overlay PNG '
                     '(0: write no overlays).')
flags.DEFINE_string('categories', '', 'A COCO json whose categories the '
                    "results carry, matched by name to the model's (module "
                    'doc).')
flags.DEFINE_string('platform', '', "JAX platform, e.g. 'cpu' ('' = JAX's "
                    'default: the GPU if there is one).')

def _read(path: str):
  """(path, image, None), or (path, None, reason) for an unreadable file."""
  try:
    return path, read_image(path), None
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    return path, None, coco_images.image_error(error, path=path)


def propose_images(generator, paths: Sequence[str], out_dir: str,
                   overlays: int = 20, progress: bool = True,
                   categories: CategoryCheck | None = None) -> dict:
  """Runs `generator` on image files and writes the outputs (module doc).

  `categories` (check_output_categories) gives the category ids the results
  carry; by default the generator's own.
  Returns a summary: {'images': count written, 'skipped': [(path, reason)],
  'proposals': total, 'compilations': {...}}.
  """
  categories = categories or check_output_categories(generator)
  os.makedirs(out_dir, exist_ok=True)
  if overlays:
    os.makedirs(os.path.join(out_dir, 'overlays'), exist_ok=True)
  segm, bbox, images, skipped = [], [], [], []
  names = {c['id']: c['name'] for c in categories.categories}
  single = categories.categories[0]['id']  # Class-agnostic results take it.
  read = collections.deque()  # (path, image) handed to the stream, in order.
  bar = tqdm(desc='images', unit='img', total=len(paths),
             disable=not progress)

  def readable_images():
    """Images read on host threads ahead of the stream; unreadable skipped."""
    for path, image, error in prefetch(_read, paths, workers=2, depth=8):
      if error:
        skipped.append((path, error))
        tqdm.write(f'skipped {path}: cannot read it as an image ({error})')
        bar.update(1)  # Counted, so that the bar reaches its total.
        continue
      read.append((path, image))
      yield image

  for proposals in generator.stream(readable_images()):
    proposals = categories.relabel(proposals)
    path, image = read.popleft()
    image_id = len(images) + 1
    images.append({'id': image_id, 'file_name': os.path.abspath(path),
                   'height': image.shape[0], 'width': image.shape[1]})
    image_segm, image_bbox = proposal_results(image_id, proposals, single)
    segm += image_segm
    bbox += image_bbox
    if overlays:
      stem = os.path.splitext(os.path.basename(path))[0]
      Image.fromarray(draw_encoded(image, proposals, overlays, names)).save(
          os.path.join(out_dir, 'overlays', f'{image_id:06d}_{stem}.png'))
    bar.update(1)
  bar.close()
  write_results(os.path.join(out_dir, 'proposals.json'), segm)
  write_results(os.path.join(out_dir, 'proposals_bbox.json'), bbox)
  with open(os.path.join(out_dir, 'images.json'), 'w') as f:
    json.dump({'images': images, 'annotations': [],
               'categories': list(categories.categories)}, f)
  return {'images': len(images), 'skipped': skipped, 'proposals': len(segm),
          'compilations': generator.compilations}


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  for name in ('model', 'images', 'out'):
    if not getattr(FLAGS, name):
      raise app.UsageError(f'--{name} is required')
  if FLAGS.platform:  # Before any computation initialises a backend.
    jax.config.update('jax_platforms', FLAGS.platform)
  paths = find_images(FLAGS.images)
  if not paths:
    raise app.UsageError(f'no image files found for --images={FLAGS.images}')
  # Flag -> the families' inference setting.
  overrides = {setting: getattr(FLAGS, name) for name, setting in
               (('num_proposals', 'results_per_image'), ('zoom', 'zoom'))
               if getattr(FLAGS, name) is not None}
  generator = families.predictor_from_path(FLAGS.model, **overrides)
  categories = check_output_categories(generator, FLAGS.categories)
  if categories.line:
    print(categories.line, flush=True)
  summary = propose_images(generator, paths, FLAGS.out, FLAGS.overlays,
                           categories=categories)
  print(f'{counted(summary["images"], "image")}, '
        f'{counted(summary["proposals"], "proposal")} written to {FLAGS.out}; '
        f'{len(summary["skipped"])} skipped')
  for path, reason in summary['skipped']:
    print(f'  skipped {path}: {reason}')


if __name__ == '__main__':
  console.run_app(main)
