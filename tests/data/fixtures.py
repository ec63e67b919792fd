"""Shared data fixtures: built TFDS datasets and small COCO-format folders.

All session-scoped, so a test session builds each dataset once:
  coco_tiny_builder      coco_tiny (../shared/data/coco_tiny) as TFDS (~3 s).
  synthetic_root         a small synthetic dataset (24 + 12 images, 96 px).
  synthetic_builder      the same as TFDS.
  broken_coco            a tiny dataset holding one case of every bad input.
`coco_tiny_data_config`, `synthetic_data_config` and `broken_data_config` give
a fresh `config.data` per test pointing at those datasets (`prepare()` on them
reuses the build); `data_config(root, tfds_dir, **fields)` makes any other.
TensorFlow is imported only by the fixtures that build TFDS datasets.
"""

import dataclasses
import io
import json
import pathlib

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
import pytest

from deepmask_jax import config_schema
from deepmask_jax.data import synthetic

SYNTHETIC_TRAIN, SYNTHETIC_VAL, SYNTHETIC_SIZE = 24, 12, 96


@pytest.fixture(scope='session')
def tfds_root(tmp_path_factory) -> pathlib.Path:
  """One tfds_dir for the session's datasets (their names keep them apart)."""
  return tmp_path_factory.mktemp('tfds')


def data_config(root, tfds_dir, **fields):
  """A fresh `config.data` for the dataset at root; fields override the schema."""
  data = config_schema.get_config().data
  data.update(dict(root=str(root), tfds_dir=str(tfds_dir), **fields))
  return data


def _prepare(data):
  from deepmask_jax.data import tfds_coco  # pylint: disable=g-import-not-at-top
  return tfds_coco.prepare(data)


@pytest.fixture
def coco_tiny_data_config(coco_tiny, tfds_root):
  return data_config(coco_tiny, tfds_root)


@pytest.fixture(scope='session')
def coco_tiny_builder(coco_tiny, tfds_root):
  return _prepare(data_config(coco_tiny, tfds_root))


@pytest.fixture(scope='session')
def synthetic_root(tmp_path_factory) -> pathlib.Path:
  root = tmp_path_factory.mktemp('synthetic')
  synthetic.generate(str(root), SYNTHETIC_TRAIN, SYNTHETIC_VAL, SYNTHETIC_SIZE, seed=0)
  return root


def synthetic_config(root, tfds_dir):
  return data_config(
      root, tfds_dir, name='synthetic', synthetic=True,
      synthetic_train_images=SYNTHETIC_TRAIN, synthetic_val_images=SYNTHETIC_VAL,
      synthetic_image_size=SYNTHETIC_SIZE,
      train_json=synthetic.TRAIN_JSON, train_images=synthetic.TRAIN_IMAGES,
      val_json=synthetic.VAL_JSON, val_images=synthetic.VAL_IMAGES)


@pytest.fixture
def synthetic_data_config(synthetic_root, tfds_root):
  return synthetic_config(synthetic_root, tfds_root)


@pytest.fixture(scope='session')
def synthetic_builder(synthetic_root, tfds_root):
  return _prepare(synthetic_config(synthetic_root, tfds_root))


# ----------------------------------------------------------------------------
# A dataset with one case of every bad input (train split; val is clean).

HEIGHT, WIDTH = 40, 48
SQUARE = [10.0, 10.0, 30.0, 10.0, 30.0, 30.0, 10.0, 30.0]


@dataclasses.dataclass
class BrokenCoco:
  """Layout of the `broken_coco` fixture; ids name the case they hold."""
  root: pathlib.Path
  train_json: pathlib.Path
  train_images: pathlib.Path
  # Annotation ids (all on image 1, good.jpg, unless said otherwise).
  good_polygon: int = 1
  two_point_part_dropped: int = 2  # One 2-point part plus a valid one.
  two_point_only: int = 3
  zero_area_box: int = 4
  negative_box: int = 5
  unknown_image: int = 6
  unknown_category: int = 7
  crowd_uncompressed_rle: int = 8
  compressed_rle: int = 9
  # Image file names and what is wrong with them.
  kept_files: tuple = ('good.jpg', 'png_named.jpg', 'gray.jpg', 'cmyk.jpg', 'empty.jpg')
  converted_files: tuple = ('png_named.jpg', 'cmyk.jpg')
  unreadable_files: tuple = ('truncated.jpg', 'not_image.jpg')
  missing_file: str = 'missing.jpg'
  wrong_size_file: str = 'wrong_size.jpg'
  empty_file: str = 'empty.jpg'
  unused_category: str = 'unused'


def _random_rgb(seed, height=HEIGHT, width=WIDTH):
  """A smooth random colour field (JPEG keeps it close to the original)."""
  coarse = np.random.default_rng(seed).integers(0, 256, (3, 4, 3), dtype=np.uint8)
  return Image.fromarray(coarse).resize((width, height), Image.BILINEAR)


def _encoded(image, **save_args):
  buffer = io.BytesIO()
  image.save(buffer, **save_args)
  return buffer.getvalue()


def _image_files():
  jpeg = _encoded(_random_rgb(0), format='JPEG', quality=90)
  return {
      'good.jpg': jpeg,
      'truncated.jpg': jpeg[:len(jpeg) // 2],
      'png_named.jpg': _encoded(_random_rgb(1), format='PNG'),
      'gray.jpg': _encoded(_random_rgb(2).convert('L'), format='JPEG'),
      'cmyk.jpg': _encoded(_random_rgb(3).convert('CMYK'), format='JPEG'),
      'empty.jpg': _encoded(_random_rgb(4), format='JPEG'),
      'wrong_size.jpg': _encoded(_random_rgb(5, width=WIDTH + 8), format='JPEG'),
      'not_image.jpg': b'this is not an image\n',
  }


def _square_rle(compressed):
  mask = np.zeros((HEIGHT, WIDTH), np.uint8)
  mask[5:15, 20:40] = 1
  rle = mask_utils.encode(np.asfortranarray(mask))
  if compressed:
    return {'size': rle['size'], 'counts': rle['counts'].decode('ascii')}
  # Column-major run lengths starting with zeros, as COCO writes crowd regions.
  counts, value, run = [], 0, 0
  for pixel in mask.ravel(order='F'):
    if pixel != value:
      counts.append(run)
      value, run = pixel, 0
    run += 1
  return {'size': [HEIGHT, WIDTH], 'counts': counts + [run]}


def _annotation(ann_id, image_id, segmentation, bbox=(10, 10, 20, 20), category_id=1,
                iscrowd=0):
  return {'id': ann_id, 'image_id': image_id, 'category_id': category_id,
          'segmentation': segmentation, 'bbox': list(bbox), 'area': 400.0,
          'iscrowd': iscrowd}


def _broken_json(file_names):
  images = [{'id': i + 1, 'file_name': name, 'height': HEIGHT, 'width': WIDTH}
            for i, name in enumerate(file_names)]
  annotations = [
      _annotation(1, 1, [SQUARE]),
      _annotation(2, 1, [[1.0, 1.0, 5.0, 5.0], SQUARE]),
      _annotation(3, 1, [[1.0, 1.0, 5.0, 5.0]]),
      _annotation(4, 1, [SQUARE], bbox=(10, 10, 0, 20)),
      _annotation(5, 1, [SQUARE], bbox=(10, 10, -5, 20)),
      _annotation(6, 999, [SQUARE]),
      _annotation(7, 1, [SQUARE], category_id=77),
      _annotation(8, 1, _square_rle(compressed=False), bbox=(20, 5, 20, 10), iscrowd=1),
      _annotation(9, 1, _square_rle(compressed=True), bbox=(20, 5, 20, 10)),
  ]
  # One object on every other image except empty.jpg.
  for image in images[1:]:
    if image['file_name'] != 'empty.jpg':
      annotations.append(_annotation(100 + image['id'], image['id'], [SQUARE]))
  categories = [{'id': 1, 'name': 'thing'}, {'id': 2, 'name': 'unused'}]
  return {'images': images, 'annotations': annotations, 'categories': categories}


@pytest.fixture(scope='session')
def broken_coco(tmp_path_factory) -> BrokenCoco:
  root = tmp_path_factory.mktemp('broken_coco')
  files = _image_files()
  for split in ('train', 'val'):
    (root / split).mkdir()
  for name, data in files.items():
    (root / 'train' / name).write_bytes(data)
  (root / 'val' / 'good.jpg').write_bytes(files['good.jpg'])
  (root / 'annotations').mkdir()
  train_names = list(files) + ['missing.jpg']
  train_names.remove('good.jpg')
  train_json = root / 'annotations' / 'instances_train.json'
  train_json.write_text(json.dumps(_broken_json(['good.jpg'] + train_names)))
  val = {'images': [{'id': 1, 'file_name': 'good.jpg', 'height': HEIGHT, 'width': WIDTH}],
         'annotations': [_annotation(1, 1, [SQUARE])],
         'categories': [{'id': 1, 'name': 'thing'}, {'id': 2, 'name': 'unused'}]}
  (root / 'annotations' / 'instances_val.json').write_text(json.dumps(val))
  return BrokenCoco(root=root, train_json=train_json, train_images=root / 'train')


@pytest.fixture
def broken_data_config(broken_coco, tfds_root):
  return data_config(
      broken_coco.root, tfds_root, name='broken',
      train_json='annotations/instances_train.json', train_images='train',
      val_json='annotations/instances_val.json', val_images='val')
