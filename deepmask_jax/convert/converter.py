"""From a weights file to a model directory: detect, map, check, save.

`convert` reads what the file's first bytes say it is: a `.t7` (below), a
PyTorch `.pth` EmbedMask checkpoint or a Detectron `.pkl` ResNet
(pickled_models.py: restricted unpickling, no torch).

A file holds one of
  * an fb.resnet.torch ResNet (`nn.Sequential`): the trunk through layer4
    (layer3 if the file stops there) is kept, pooling and classifier dropped
    -> variables {'params': {'trunk': ...}, 'constants': {'trunk': ...}} for
    `config.trunk_init`. `config.trunk.padding` records the file's padding
    ('zero' for ImageNet files): a Trunk built so computes the file's own
    forward. DeepMask, which pads symmetrically and stops at layer3, loads
    the same variables (see train/initialization.py);
  * a trained DeepMask `model.t7` ({model = nn.DeepMask, config = ...}) ->
    full DeepMask variables;
  * a trained SharpMask `model.t7` (nn.SharpMask) -> {'deepmask', 'refinement'}.
The config is `get_config()` with the fields the file determines. Before
anything is written, the variables are checked against the shapes our model
expects (`jax.eval_shape` of its init); `save_model` writes atomically.
"""

import dataclasses
import os

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from deepmask_jax.config_renames import steps_from_epochs
from deepmask_jax.config_schema import get_config
from deepmask_jax.convert.deepmask import map_deepmask
from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.pickle_files import sniff
from deepmask_jax.convert.pickled_models import read_pickled
from deepmask_jax.convert.resnet import map_trunk
from deepmask_jax.convert.sharpmask import map_sharpmask
from deepmask_jax.convert.t7_file import load_t7
from deepmask_jax.convert.torch_tree import Node
from deepmask_jax.families import build_model
from deepmask_jax.models import Trunk
from deepmask_jax.families.deepmask.patch_geometry import patch_side
from deepmask_jax.models.store import save_model

# train.lua option -> (config section or None, field): carried over as is;
# maxload (batches per epoch) scales config.schedule's steps instead.
T7_CONFIG_FIELDS = (
    ('shift', 'patch', 'shift'), ('scale', 'patch', 'scale_jitter'),
    ('hfreq', 'patch', 'hfreq'), ('batch', None, 'batch_size'),
    ('maxload', 'schedule', None), ('momentum', None, 'momentum'),
    ('wd', None, 'weight_decay'))


@dataclasses.dataclass
class Conversion:
  """What a file converts to: kind ('resnet', 'deepmask', 'sharpmask',
  'embedmask'),
  variables {'params', 'constants'} of float32 numpy arrays, the config,
  and lines describing what was read."""
  kind: str
  variables: dict
  config: ml_collections.ConfigDict
  notes: list


def _set(config, section, field, value) -> None:
  target = config if section is None else config[section]
  target[field] = type(target[field])(value)


def _set_trunk(config, trunk) -> None:
  config.trunk.stem_width = trunk.stem_width
  config.trunk.widths = trunk.widths
  config.trunk.depths = trunk.depths
  config.trunk.expansion = trunk.expansion
  config.trunk.padding = trunk.padding


def _trunk_note(trunk) -> str:
  return (f'trunk: stem {trunk.stem_width}, widths {trunk.widths}, depths '
          f'{trunk.depths}, expansion {trunk.expansion}, {trunk.num_convs} convs')


def _convert_resnet(root: Node, config):
  trunk, dropped = map_trunk(root.children(), allow_zero_padding=True,
                             max_layers=4)
  _set_trunk(config, trunk)
  notes = [_trunk_note(trunk), f'trunk padding: {trunk.padding}' + (
      " (DeepMask's createTrunk pads symmetrically when it loads this)"
      if trunk.padding == 'zero' else '')]
  if dropped:
    notes.append(f'dropped after layer{len(trunk.widths)}: ' +
                 ', '.join(node.typename or '?' for node in dropped))
  variables = {'params': {'trunk': trunk.params},
               'constants': {'trunk': trunk.constants}}
  return variables, notes


def _set_deepmask(config, weights) -> None:
  _set_trunk(config, weights.trunk)
  config.head.feature_channels = weights.feature_channels
  config.head.embedding = weights.embedding
  config.head.score_hidden = weights.score_hidden
  config.head.dropout = float(weights.dropout)
  config.patch.object_window = 16 * weights.feature_size
  config.patch.mask_size = weights.mask_size
  config.patch.label_size = weights.label_size


def _convert_deepmask(model: Node, config):
  weights = map_deepmask(model)
  _set_deepmask(config, weights)
  variables = {'params': weights.params, 'constants': weights.constants}
  return variables, [_trunk_note(weights.trunk)]


def _convert_sharpmask(model: Node, config):
  weights = map_sharpmask(model)
  config.model = 'sharpmask'
  _set_deepmask(config, weights.deepmask)
  config.patch.label_size = config.patch.object_window  # train.lua: gSz = iSz.
  config.refine.km = weights.km
  variables = {'params': weights.params, 'constants': weights.constants}
  return variables, [_trunk_note(weights.deepmask.trunk)]


_CONVERTERS = {'resnet': _convert_resnet, 'deepmask': _convert_deepmask,
               'sharpmask': _convert_sharpmask}


def _apply_t7_config(config, t7_config: Node, kind: str) -> list:
  """Carries train.lua options over; iSz must agree with the structure."""
  if t7_config is None:
    return []
  if t7_config.has('iSz') and t7_config.integer('iSz') != config.patch.object_window:
    raise t7_config.error(f"iSz = {t7_config.integer('iSz')}, but the model's "
                          f'layers give {config.patch.object_window}')
  carried = []
  for name, section, field in T7_CONFIG_FIELDS:
    if not t7_config.has(name):
      continue
    if name == 'maxload':  # The reference's epochs, in steps of this length.
      config.schedule.update(steps_from_epochs(
          {'maxload': t7_config.integer(name)}, config.schedule))
    else:
      _set(config, section, field, t7_config.number(name))
    carried.append(name)
  if kind == 'sharpmask' and t7_config.has('gSz'):
    config.patch.label_size = t7_config.integer('gSz')
    carried.append('gSz')
  return [f"training options carried over: {', '.join(carried)}"] if carried else []


def _find_model(root: Node):
  """(kind, model Node, config Node or None) for what the file holds."""
  if root.typename == 'nn.Sequential':
    return 'resnet', root, None
  if root.typename in ('nn.DeepMask', 'nn.SharpMask'):
    return root.typename[3:].lower(), root, None
  if not root.typename and root.has('model'):
    model = root.child('model')
    config = root.child('config') if root.has('config') else None
    if model.typename in ('nn.DeepMask', 'nn.SharpMask'):
      return model.typename[3:].lower(), model, config
    raise model.error('expected an nn.DeepMask or nn.SharpMask')
  raise root.error('expected a ResNet (nn.Sequential), an nn.DeepMask, an '
                   'nn.SharpMask, or a table {model = ..., config = ...}')


def _check_against_model(variables: dict, config, kind: str) -> None:
  """Every array must have the shape our model's init gives it, and no more."""
  if kind == 'resnet':
    module = Trunk(padding=config.trunk.padding,
                   stem_width=config.trunk.stem_width,
                   widths=tuple(config.trunk.widths),
                   depths=tuple(config.trunk.depths),
                   expansion=config.trunk.expansion,
                   stride_in_1x1=config.trunk.stride_in_1x1,
                   norm=config.trunk.norm)
    side = 64  # Any side works: only the shapes of the variables matter.
    variables = {c: tree['trunk'] for c, tree in variables.items()}
  elif kind == 'embedmask':
    module = build_model(config)
    side = 128  # P3..P7 of any side >= 128 give the shapes.
  else:
    module = build_model(config)
    side = patch_side(config)
  expected = jax.eval_shape(module.init, jax.random.PRNGKey(0),
                            jnp.zeros((1, side, side, 3)))
  expected = {jax.tree_util.keystr(k): v.shape for k, v in
              jax.tree_util.tree_flatten_with_path(expected)[0]}
  got = {jax.tree_util.keystr(k): v.shape for k, v in
         jax.tree_util.tree_flatten_with_path(variables)[0]}
  for key in sorted(set(expected) | set(got)):
    if expected.get(key) != got.get(key):
      raise ConversionError(
          f'converted variables do not fit our model at {key}: converted '
          f'{got.get(key)}, expected {expected.get(key)}')


def read_t7(path: str) -> Conversion:
  """Reads and maps a `.t7` file without writing anything."""
  root = Node(load_t7(path), 'file')
  try:
    return _map(root)
  except ConversionError as e:
    raise ConversionError(f'{path}: {e}') from None


def _map(root: Node) -> Conversion:
  kind, model, t7_config = _find_model(root)
  model = Node(model.obj, 'model')  # Paths as the Lua code names them.
  t7_config = None if t7_config is None else Node(t7_config.obj, 'config')
  config = get_config()
  variables, notes = _CONVERTERS[kind](model, config)
  notes += _apply_t7_config(config, t7_config, kind)
  variables = jax.tree.map(lambda a: np.asarray(a, np.float32), variables)
  _check_against_model(variables, config, kind)
  return Conversion(kind, variables, config, notes)


def read_weights(path: str) -> Conversion:
  """Reads and maps a `.t7`, `.pth` or `.pkl` file (by content), writing
  nothing."""
  if sniff(path) == 't7':
    return read_t7(path)
  kind, variables, config, notes = read_pickled(path)
  variables = jax.tree.map(lambda a: np.asarray(a, np.float32), variables)
  try:
    _check_against_model(variables, config, kind)
  except ConversionError as e:
    raise ConversionError(f'{path}: {e}') from None
  return Conversion(kind, variables, config, notes)


def convert(path: str, out_dir: str, read=read_weights) -> Conversion:
  """Converts `path` and writes the model directory `out_dir` (must not exist).

  Raises ConversionError (one line: the problem and where) for a file it
  cannot convert, FileExistsError if `out_dir` exists; in both cases nothing
  is written.
  """
  if os.path.exists(out_dir):  # Fail before the (longer) reading.
    raise FileExistsError(f'{out_dir} already exists; choose a new --out')
  conversion = read(path)
  save_model(out_dir, conversion.variables, conversion.config)
  return conversion


def convert_t7(path: str, out_dir: str) -> Conversion:
  """`convert` for a `.t7` file only."""
  return convert(path, out_dir, read=read_t7)
