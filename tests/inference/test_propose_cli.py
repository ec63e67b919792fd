"""The proposal CLI on a folder of awkward images."""

import contextlib
import io
import json
import os

from absl import flags
from absl.testing import flagsaver
import numpy as np
from PIL import Image
from pycocotools.coco import COCO

from deepmask_jax import propose
from deepmask_jax.models.store import save_model


def write_images(folder):
  rng = np.random.default_rng(0)
  os.makedirs(folder)
  Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8)).save(
      os.path.join(folder, 'gray.jpg'))
  Image.fromarray(rng.integers(0, 256, (30, 45, 4), dtype=np.uint8)).save(
      os.path.join(folder, 'alpha.png'))
  Image.fromarray(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)).save(
      os.path.join(folder, 'tiny.png'))
  Image.fromarray(rng.integers(0, 256, (12, 400, 3), dtype=np.uint8)).save(
      os.path.join(folder, 'long.jpg'))
  with open(os.path.join(folder, 'broken.jpg'), 'wb') as f:
    f.write(b'this is not a JPEG')
  with open(os.path.join(folder, 'notes.txt'), 'w') as f:
    f.write('not an image, not listed')


def test_cli_writes_json_and_overlays_and_skips_unreadable(tmp_path,
                                                           tiny_sharpmask):
  model_dir = str(tmp_path / 'model')
  save_model(model_dir, tiny_sharpmask[1], tiny_sharpmask[2])
  images, out = str(tmp_path / 'images'), str(tmp_path / 'out')
  write_images(images)
  stdout = io.StringIO()
  argv = ['propose', f'--model={model_dir}', f'--images={images}',
          f'--out={out}', '--num_proposals=12', '--overlays=3']
  with flagsaver.flagsaver(), contextlib.redirect_stdout(stdout):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    propose.main([argv[0]])
  assert 'broken.jpg' in stdout.getvalue()
  assert '4 images' in stdout.getvalue()

  index = COCO(os.path.join(out, 'images.json'))
  names = sorted(os.path.basename(i['file_name'])
                 for i in index.dataset['images'])
  assert names == ['alpha.png', 'gray.jpg', 'long.jpg', 'tiny.png']
  results = index.loadRes(os.path.join(out, 'proposals.json'))
  for image in index.dataset['images']:
    anns = results.loadAnns(results.getAnnIds(imgIds=image['id']))
    assert 0 < len(anns) <= 12
    assert all(a['segmentation']['size'] == [image['height'], image['width']]
               for a in anns)
  with open(os.path.join(out, 'proposals_bbox.json')) as f:
    assert len(json.load(f)) == len(results.getAnnIds())
  overlays = sorted(os.listdir(os.path.join(out, 'overlays')))
  assert len(overlays) == 4
  tiny = [o for o in overlays if o.endswith('_tiny.png')][0]
  assert Image.open(os.path.join(out, 'overlays', tiny)).size == (3, 4)


def test_find_images_accepts_a_file_a_folder_and_a_glob(tmp_path):
  folder = str(tmp_path / 'images')
  write_images(folder)
  assert len(propose.find_images(folder)) == 5  # .txt is not an image.
  assert propose.find_images(os.path.join(folder, 'gray.jpg')) == [
      os.path.join(folder, 'gray.jpg')]
  assert [os.path.basename(p) for p in propose.find_images(
      os.path.join(folder, '*.png'))] == ['alpha.png', 'tiny.png']
