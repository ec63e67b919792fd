"""Small stand-ins for the files the documented commands read.

The docs download COCO, the released `.t7`/`.pth`/`.pkl` weights and use
the reader's own photos; tests/test_docs_commands.py runs those commands on
the stand-ins below, written at the same relative paths in the command's
working folder:

  data/coco                 a COCO 2017 layout: the first images of coco_tiny
                            (../shared/data/coco_tiny) with their annotations
  photos/*.jpg, photo.jpg   coco_tiny val images, scaled to 128 px
  pretrained/..., model.t7, FILE
                            tiny weights files written by deepmask_jax/testing's
                            Torch7 and PyTorch/Detectron writers
  models/resnet50           such a `.t7` ResNet, converted

All trunks share one tiny ResNet geometry (TRUNK), so that a converted
`.t7`, `.pth` or `.pkl` trunk fits the configs' trunk overrides in
tests/doc_runner.py.
"""

import json
import os
import shutil

from PIL import Image

from deepmask_jax.convert import convert
from deepmask_jax.testing import embedmask_reference
from deepmask_jax.testing import pth_writer
from deepmask_jax.testing import torch_trees
from deepmask_jax.testing.t7_writer import write_t7

# stem, layer1..layer4 widths, one block each (layer4 only in EmbedMask's).
TRUNK = dict(stem_width=8, widths=(4, 8, 16, 32), depths=(1, 1, 1, 1))
COCO_IMAGES = {'train': 3, 'val': 2}  # First images of each coco_tiny split.
PHOTOS, PHOTO_SIDE = 2, 128


def _coco_subset(coco_tiny, root, split, count):
  """root/annotations/instances_<split>2017.json and root/<split>2017/: the
  first `count` images of coco_tiny's split (every category kept)."""
  with open(coco_tiny / 'annotations' / f'instances_{split}2017.json') as f:
    dataset = json.load(f)
  dataset['images'] = dataset['images'][:count]
  kept = {image['id'] for image in dataset['images']}
  dataset['annotations'] = [a for a in dataset['annotations']
                            if a['image_id'] in kept]
  os.makedirs(root / 'annotations', exist_ok=True)
  with open(root / 'annotations' / f'instances_{split}2017.json', 'w') as f:
    json.dump(dataset, f)
  os.makedirs(root / f'{split}2017')
  for image in dataset['images']:
    shutil.copy(coco_tiny / f'{split}2017' / image['file_name'],
                root / f'{split}2017' / image['file_name'])


def coco(coco_tiny, path):
  for split, count in COCO_IMAGES.items():
    _coco_subset(coco_tiny, path, split, count)


def _val_names(coco_tiny, count):
  return sorted(os.listdir(coco_tiny / 'val2017'))[:count]


def _scaled_copy(source, path):
  """`source` with its longer side scaled to PHOTO_SIDE, saved at `path`."""
  with Image.open(source) as image:
    image.thumbnail((PHOTO_SIDE, PHOTO_SIDE))
    image.save(path)


def photos(coco_tiny, path):
  os.makedirs(path)
  for name in _val_names(coco_tiny, PHOTOS):
    _scaled_copy(coco_tiny / 'val2017' / name, path / name)


def photo(coco_tiny, path):
  _scaled_copy(coco_tiny / 'val2017' / _val_names(coco_tiny, 1)[0], path)


def _t7_geometry():
  return torch_trees.Geometry(stem=TRUNK['stem_width'],
                              widths=TRUNK['widths'][:3],
                              depths=TRUNK['depths'][:3])


def resnet_t7(path):
  """fb.resnet.torch's layout (zero padding, layer4, classifier)."""
  tree = torch_trees.resnet_file(
      _t7_geometry(), torch_trees.TrunkStyle(),
      layer4=(TRUNK['widths'][3], TRUNK['depths'][3]))
  write_t7(path, tree, cuda=True)


def deepmask_t7(path):
  write_t7(path, torch_trees.deepmask_file(torch_trees.Geometry()), cuda=True)


def sharpmask_t7(path):
  write_t7(path, torch_trees.sharpmask_file(torch_trees.Geometry()), cuda=True)


def _embedmask_geometry():
  return embedmask_reference.Geometry(
      stem=TRUNK['stem_width'], widths=TRUNK['widths'], depths=TRUNK['depths'],
      num_classes=80)  # COCO's, as the released files.


def embedmask_pth(path):
  """A maskrcnn-benchmark checkpoint dict in PyTorch's zip container."""
  state = embedmask_reference.embedmask_state(_embedmask_geometry(), seed=0)
  pth_writer.write_zip(path, {'model': state, 'iteration': 90000})


def msra_pkl(path):
  blobs, _ = embedmask_reference.caffe2_blobs(_embedmask_geometry(), seed=0)
  pth_writer.write_detectron_pkl(path, blobs)


def converted_resnet(path):
  t7 = f'{path}.t7'
  resnet_t7(t7)
  convert(t7, str(path))
  os.remove(t7)


# path -> maker(path) or maker(coco_tiny, path) (NEEDS_COCO_TINY).
STAND_INS = {
    'data/coco': coco,
    'photos': photos,
    'photo.jpg': photo,
    'pretrained/deepmask/model.t7': deepmask_t7,
    'pretrained/sharpmask/model.t7': sharpmask_t7,
    'pretrained/resnet-50.t7': resnet_t7,
    'pretrained/embed_mask_R50_1x.pth': embedmask_pth,
    'pretrained/R-50.pkl': msra_pkl,
    'model.t7': deepmask_t7,
    'FILE': resnet_t7,
    'models/resnet50': converted_resnet,
}
NEEDS_COCO_TINY = (coco, photos, photo)


def write_stand_ins(paths, folder, coco_tiny):
  """Writes the stand-ins of `paths` (STAND_INS keys) under `folder`."""
  for name in paths:
    path = folder / name
    os.makedirs(path.parent, exist_ok=True)
    maker = STAND_INS[name]
    if maker in NEEDS_COCO_TINY:
      maker(coco_tiny, path)
    else:
      maker(path)
