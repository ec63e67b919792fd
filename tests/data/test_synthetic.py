"""synthetic: determinism, valid COCO json, drawn masks, coverage, occlusion."""

import collections
import subprocess
import sys

import numpy as np
from PIL import Image
from pycocotools import coco as coco_api
import pytest

from deepmask_jax import config_schema
from deepmask_jax.data import synthetic
from tests.data import fixtures


@pytest.fixture(scope='module')
def train_coco(synthetic_root):
  return coco_api.COCO(str(synthetic_root / synthetic.TRAIN_JSON))


def _files(root):
  return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*')) if p.is_file()}


def test_same_seed_gives_identical_files(tmp_path):
  synthetic.generate(str(tmp_path / 'a'), 4, 2, 64, seed=3)
  synthetic.generate(str(tmp_path / 'b'), 4, 2, 64, seed=3)
  synthetic.generate(str(tmp_path / 'c'), 4, 2, 64, seed=4)
  files_a, files_b, files_c = (_files(tmp_path / n) for n in 'abc')
  assert files_a == files_b
  assert files_a.keys() == files_c.keys()
  assert any(files_a[k] != files_c[k] for k in files_a)


def test_json_is_valid_coco(synthetic_root, train_coco):
  for split, count in (('train', fixtures.SYNTHETIC_TRAIN), ('val', fixtures.SYNTHETIC_VAL)):
    coco = coco_api.COCO(str(synthetic_root / f'annotations/instances_{split}.json'))
    assert len(coco.getImgIds()) == count
    for image in coco.imgs.values():
      assert (synthetic_root / split / image['file_name']).is_file()
  size = fixtures.SYNTHETIC_SIZE
  for ann in train_coco.anns.values():
    x, y, w, h = ann['bbox']
    assert ann['area'] > 0 and w > 0 and h > 0
    assert x >= 0 and y >= 0 and x + w <= size and y + h <= size
    assert train_coco.annToMask(ann).sum() == ann['area']


def test_masks_match_the_drawn_image(synthetic_root, train_coco):
  for index, image_id in enumerate(sorted(train_coco.getImgIds())[:8]):
    drawn, objects = synthetic.render_example(0, 'train', index, fixtures.SYNTHETIC_SIZE)
    anns = train_coco.loadAnns(train_coco.getAnnIds(imgIds=image_id))
    assert len(anns) == len(objects)
    for ann, obj in zip(anns, objects):
      np.testing.assert_array_equal(train_coco.annToMask(ann).astype(bool), obj['mask'])
      assert ann['category_id'] == obj['category'] + 1
    stored = np.asarray(Image.open(synthetic_root / 'train' /
                                   train_coco.imgs[image_id]['file_name']), np.float32)
    psnr = 10 * np.log10(255**2 / np.mean((stored - drawn)**2))
    assert psnr > 30  # Only JPEG loss between them.


def test_every_category_and_object_count_occurs(train_coco):
  used = {ann['category_id'] for ann in train_coco.anns.values()}
  assert used == set(range(1, len(synthetic.CATEGORIES) + 1))
  per_image = collections.Counter(ann['image_id'] for ann in train_coco.anns.values())
  assert len(per_image) == len(train_coco.imgs)  # No image without objects.
  assert 1 <= min(per_image.values()) and max(per_image.values()) <= 6
  assert len(set(per_image.values())) >= 3


def test_occluded_objects_are_rle_and_mostly_visible():
  occluded = 0
  for index in range(30):
    _, objects = synthetic.render_example(0, 'train', index, 128)
    covered = np.zeros((128, 128), bool)
    for obj in objects:
      assert not (covered & obj['mask']).any()  # Visible masks are disjoint.
      covered |= obj['mask']
      visible = obj['mask'].sum()
      assert visible >= 0.5 * obj['full_area']
      if visible < obj['full_area']:
        occluded += 1
        assert obj['polygon'] is None
  assert occluded > 0


def test_object_sizes_span_small_to_large(train_coco):
  sides = [max(ann['bbox'][2:]) / fixtures.SYNTHETIC_SIZE for ann in train_coco.anns.values()]
  assert min(sides) < 0.2 and max(sides) > 0.5


def test_ring_segmentations_are_rle_strings(train_coco):
  ring_id = synthetic.CATEGORIES.index('ring') + 1
  rings = train_coco.loadAnns(train_coco.getAnnIds(catIds=[ring_id]))
  assert rings and all(isinstance(ann['segmentation'], dict) for ann in rings)
  assert all(isinstance(ann['segmentation']['counts'], str) for ann in rings)


def _enclosed_background(mask):
  """Pixels outside the mask that cannot reach the image border (holes)."""
  outside = np.zeros_like(mask)
  outside[[0, -1], :] = ~mask[[0, -1], :]
  outside[:, [0, -1]] = ~mask[:, [0, -1]]
  while True:
    grown = outside.copy()
    grown[1:] |= outside[:-1]
    grown[:-1] |= outside[1:]
    grown[:, 1:] |= outside[:, :-1]
    grown[:, :-1] |= outside[:, 1:]
    grown &= ~mask
    if (grown == outside).all():
      return ~mask & ~outside
    outside = grown


def test_unoccluded_rings_have_holes():
  ring = synthetic.CATEGORIES.index('ring')
  # Image i's top shape (drawn last, never occluded) has category i % 6.
  indices = range(ring, 10 * len(synthetic.CATEGORIES), len(synthetic.CATEGORIES))
  with_hole = 0
  for index in indices:
    _, objects = synthetic.render_example(0, 'train', index, 96)
    assert objects[-1]['category'] == ring
    with_hole += _enclosed_background(objects[-1]['mask']).any()
  assert with_hole >= 7  # Rings cut by the image border may open their hole.


def test_ensure_synthetic_generates_once_and_points_config_at_it(tmp_path, monkeypatch):
  monkeypatch.setattr(synthetic, 'DEFAULT_TRAIN_IMAGES', 3)
  monkeypatch.setattr(synthetic, 'DEFAULT_VAL_IMAGES', 2)
  monkeypatch.setattr(synthetic, 'DEFAULT_IMAGE_SIZE', 48)
  data = synthetic.ensure_synthetic(fixtures.data_config(tmp_path, '', synthetic=True))
  assert data.train_json == synthetic.TRAIN_JSON and data.val_images == synthetic.VAL_IMAGES
  coco = coco_api.COCO(str(tmp_path / synthetic.TRAIN_JSON))
  assert len(coco.imgs) == 3 and coco.imgs[1]['height'] == 48
  mtime = (tmp_path / synthetic.TRAIN_JSON).stat().st_mtime_ns
  synthetic.ensure_synthetic(fixtures.data_config(tmp_path, '', synthetic=True))
  assert (tmp_path / synthetic.TRAIN_JSON).stat().st_mtime_ns == mtime


def test_ensure_synthetic_does_nothing_when_off(tmp_path):
  data = synthetic.ensure_synthetic(fixtures.data_config(tmp_path, ''))
  assert data.train_json == config_schema.get_config().data.train_json
  assert not any(tmp_path.iterdir())


def test_command_line(tmp_path):
  subprocess.run([sys.executable, '-m', 'deepmask_jax.data.synthetic', '--out', str(tmp_path),
                  '--train', '3', '--val', '2', '--size', '40'], check=True,
                 capture_output=True)
  coco = coco_api.COCO(str(tmp_path / synthetic.VAL_JSON))
  assert len(coco.imgs) == 2
  assert Image.open(tmp_path / 'train' / coco_api.COCO(
      str(tmp_path / synthetic.TRAIN_JSON)).imgs[1]['file_name']).size == (40, 40)


def test_too_small_image_size_is_refused(tmp_path):
  with pytest.raises(ValueError, match='at least'):
    synthetic.generate(str(tmp_path), 1, 1, 8)
