"""What a `.pth` or `.pkl` holds -> our variables, config and notes.

  * a PyTorch EmbedMask checkpoint: maskrcnn-benchmark's checkpoint dict
    ({'model', 'optimizer', 'scheduler', 'iteration', ...}; only 'model' is
    read) or a bare state dict, DDP's `module.` prefixes stripped -> the full
    EmbedMask (convert/embedmask.py);
  * a Detectron `.pkl` ({'blobs': {...}} or the blobs): the MSRA ResNet
    (stride in the 1x1 conv) -> {'params': {'trunk'}, 'constants': {'trunk'}}
    for `config.trunk_init`; the ImageNet classifier (fc1000), the stem's
    unused conv1_b and solver momenta are dropped and counted.
"""

import numpy as np

from deepmask_jax.config_schema import get_config
from deepmask_jax.convert.embedmask import EMBEDMASK_KEY, map_embedmask
from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.pickle_files import read_pickled_weights
from deepmask_jax.convert.state_dict import (Caffe2Trunk, TensorSource,
                                             map_msra_trunk)

# COCO's 80 categories in id order: maskrcnn-benchmark's contiguous labels
# 1..80 (cls_logits channels 0..79) follow this order.
COCO_CATEGORY_IDS = (
    1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 13, 14, 15, 16, 17, 18, 19, 20, 21, 22,
    23, 24, 25, 27, 28, 31, 32, 33, 34, 35, 36, 37, 38, 39, 40, 41, 42, 43, 44,
    46, 47, 48, 49, 50, 51, 52, 53, 54, 55, 56, 57, 58, 59, 60, 61, 62, 63, 64,
    65, 67, 70, 72, 73, 74, 75, 76, 77, 78, 79, 80, 81, 82, 84, 85, 86, 87, 88,
    89, 90)
COCO_CATEGORY_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train',
    'truck', 'boat', 'traffic light', 'fire hydrant', 'stop sign',
    'parking meter', 'bench', 'bird', 'cat', 'dog', 'horse', 'sheep', 'cow',
    'elephant', 'bear', 'zebra', 'giraffe', 'backpack', 'umbrella', 'handbag',
    'tie', 'suitcase', 'frisbee', 'skis', 'snowboard', 'sports ball', 'kite',
    'baseball bat', 'baseball glove', 'skateboard', 'surfboard',
    'tennis racket', 'bottle', 'wine glass', 'cup', 'fork', 'knife', 'spoon',
    'bowl', 'banana', 'apple', 'sandwich', 'orange', 'broccoli', 'carrot',
    'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch', 'potted plant',
    'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse', 'remote',
    'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')
# The ImageNet classifier, and the stem conv's bias (about 1e-9 in the MSRA
# files), which maskrcnn-benchmark's bias-free stem conv never loads.
DROPPED_BLOBS = ('fc1000_w', 'fc1000_b', 'conv1_b')


def _is_tensor_dict(obj) -> bool:
  return isinstance(obj, dict) and bool(obj) and all(
      isinstance(v, np.ndarray) for v in obj.values())


def state_dict_of(obj, path: str) -> tuple:
  """(state dict with `module.` stripped, notes) of a checkpoint object."""
  notes = []
  if isinstance(obj, dict) and 'model' in obj and not _is_tensor_dict(obj):
    ignored = sorted(str(k) for k in obj if k != 'model')
    if ignored:
      notes.append(f"checkpoint dict: read 'model', ignored "
                   f"{', '.join(ignored)}")
    obj = obj['model']
  if not isinstance(obj, dict) or not obj:
    raise ConversionError(f'{path}: expected a state dict (or a checkpoint '
                          "dict with 'model'), got a "
                          f'{type(obj).__name__}')
  state = {}
  for key, value in obj.items():
    name = str(key).removeprefix('module.')
    if name in state:
      raise ConversionError(f'{path}: {key} and {name} both appear')
    state[name] = value
  stripped = sum(str(k).startswith('module.') for k in obj)
  if stripped:
    notes.append(f"stripped 'module.' from {stripped} keys")
  return state, notes


def embedmask_from_pth(obj, path: str) -> tuple:
  """(variables, config, notes) of a PyTorch EmbedMask checkpoint."""
  state, notes = state_dict_of(obj, path)
  if EMBEDMASK_KEY not in state:
    raise ConversionError(f'{path}: not an EmbedMask checkpoint (no '
                          f'{EMBEDMASK_KEY} among its {len(state)} keys)')
  weights = map_embedmask(state, path)
  config = _trunk_config(weights.trunk)
  config.model = 'embedmask'
  em = config.embedmask
  em.num_classes = weights.num_classes
  em.embed_dim = weights.embed_dim
  em.fpn_channels = weights.fpn_channels
  em.num_convs = weights.num_convs
  if weights.num_classes == len(COCO_CATEGORY_IDS):
    em.category_ids = COCO_CATEGORY_IDS
    em.category_names = COCO_CATEGORY_NAMES
    notes.append('80 classes: labelled with the COCO category ids')
  config.batch_size = 16  # The 1x recipe (configs/embedmask.py).
  config.weight_decay = 1e-4
  notes = weights.notes + notes + [
      f'head: {weights.num_classes} classes, embedding {weights.embed_dim}, '
      f'{weights.num_convs} convs per tower, FPN {weights.fpn_channels}']
  variables = {'params': weights.params, 'constants': weights.constants}
  return variables, config, notes


def trunk_from_pkl(obj, path: str) -> tuple:
  """(variables, config, notes) of a Detectron ResNet `.pkl`."""
  blobs = obj.get('blobs', obj)
  if not isinstance(blobs, dict):
    raise ConversionError(f"{path}: 'blobs' is a {type(blobs).__name__}, "
                          'not a dict of arrays')
  dropped = sorted(k for k in blobs if k in DROPPED_BLOBS
                   or str(k).endswith('_momentum'))
  source = TensorSource({k: v for k, v in blobs.items() if k not in dropped},
                        path)
  trunk = map_msra_trunk(Caffe2Trunk(source))
  source.check_all_used()
  config = _trunk_config(trunk)
  notes = [trunk.note()]
  if dropped:
    notes.append(f'dropped {len(dropped)} blobs: {", ".join(dropped[:4])}'
                 + (' ...' if len(dropped) > 4 else ''))
  variables = {'params': {'trunk': trunk.params},
               'constants': {'trunk': trunk.constants}}
  return variables, config, notes


def _trunk_config(trunk):
  config = get_config()
  config.trunk.stem_width = trunk.stem_width
  config.trunk.widths = trunk.widths
  config.trunk.depths = trunk.depths
  config.trunk.expansion = trunk.expansion
  config.trunk.stride_in_1x1 = True
  config.trunk.norm = 'frozen_per_conv'  # Each BN kept after its conv.
  config.trunk.padding = 'zero'  # PyTorch/caffe2 convs pad with zeros.
  return config


def read_pickled(path: str) -> tuple:
  """(kind, variables, config, notes): kind 'embedmask' for a `.pth`,
  'resnet' for a Detectron `.pkl`."""
  container, obj = read_pickled_weights(path)
  if container == 'pth':
    return ('embedmask',) + embedmask_from_pth(obj, path)
  return ('resnet',) + trunk_from_pkl(obj, path)
