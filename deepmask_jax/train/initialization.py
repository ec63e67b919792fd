"""Initial model variables: fresh, or with a pretrained subtree put in.

Families combine these: DeepMask and EmbedMask fill their 'trunk' from
`config.trunk_init` (a model directory holding a trunk, e.g. fb.resnet.torch's
`resnet-50.t7` converted by `python -m deepmask_jax.convert`, BN folded into
the trunk's constants); SharpMask fills its frozen 'deepmask' subtree from a
trained DeepMask. Whole trunk layers the model lacks (layer4 for DeepMask's
trunk through layer3) are left out; the model's own padding applies (DeepMask
pads symmetrically whatever the file did).
"""

import os

from absl import logging
from flax import traverse_util
import jax
import jax.numpy as jnp

from deepmask_jax.errors import InputError
from deepmask_jax.models import store


def fresh_variables(model, seed: int, input_shape, impl: str = 'rbg') -> dict:
  """{'params', 'constants'} of `model` initialised on zeros of `input_shape`.

  `impl` is the PRNG of the initialisers: 'rbg' compiles an init about three
  times faster on CPU than JAX's default threefry (17 s against 51 s for a
  tiny SharpMask), and the initial values are as random.
  """
  return jax.jit(model.init)(jax.random.key(seed, impl=impl),
                             jnp.zeros(input_shape))


def with_pretrained_trunk(variables: dict, config) -> dict:
  """`variables` with its 'trunk' read from the model directory config.trunk_init.

  The file's trunk must compute what ours does: besides the shapes (checked
  by replace_subtree), the position of the stride (config.trunk.stride_in_1x1)
  and the normalisation (config.trunk.norm) must agree.
  """
  if not config.trunk_init:
    return variables
  trunk_vars, file_config = store.load_model(config.trunk_init)
  _check_trunk_layout(config, file_config, config.trunk_init)
  source = {c: _layers_of(tree['trunk'], variables[c]['trunk'])
            for c, tree in trunk_vars.items() if c in variables}
  return replace_subtree(variables, 'trunk', source, config.trunk_init)


def with_pretrained_model(variables: dict, config) -> dict:
  """`variables` with every variable that fits read from config.init_from.

  config.init_from is a model directory (from the converter) or a training
  workdir (its best checkpoint). A variable is taken when the file has one at
  the same path with the same shape; the others keep their fresh values and
  are named in the log, so a model fine-tuned on another set of classes
  starts all but its class logits from the file.
  """
  path = config.get('init_from', '')
  if not path:
    return variables
  if os.path.isdir(os.path.join(path, store.TRAIN_CHECKPOINTS)):
    source, file_config = store.load_training_checkpoint(path)
  else:
    source, file_config = store.load_model(path)
  if file_config.model != config.model:
    raise InputError(f'{path}: holds a {file_config.model} model, but '
                     f'config.model is {config.model}')
  _check_trunk_layout(config, file_config, path)
  ours = traverse_util.flatten_dict(variables)
  theirs = traverse_util.flatten_dict(source)
  fresh = [key for key, value in ours.items()
           if key not in theirs or jnp.shape(theirs[key]) != jnp.shape(value)]
  if len(fresh) == len(ours):
    raise InputError(f'{path}: none of its variables fits this model; check '
                     f'config.trunk and the model settings against the file')
  if fresh:
    logging.warning('%s: %d of %d variables do not fit and keep their fresh '
                    'values: %s', path, len(fresh), len(ours),
                    ', '.join('/'.join(key) for key in fresh[:8])
                    + (' ...' if len(fresh) > 8 else ''))
  merged = {key: value if key in fresh else jnp.asarray(theirs[key])
            for key, value in ours.items()}
  return traverse_util.unflatten_dict(merged)


def _check_trunk_layout(config, file_config, path: str) -> None:
  """The file's trunk must put its stride where ours does (it changes the
  function but no shape) and normalise as ours does."""
  differ = []
  for field, default in (('stride_in_1x1', False), ('norm', 'frozen')):
    ours = config.trunk.get(field, default)
    theirs = file_config.trunk.get(field, default)
    if ours != theirs:
      differ.append((field, ours, theirs))
  if differ:
    raise InputError(
        f'{path}: its trunk has '
        + ', '.join(f'{field}={theirs}' for field, _, theirs in differ)
        + ' but config.trunk has '
        + ', '.join(f'{field}={ours}' for field, ours, _ in differ)
        + '; set ' + ' '.join(f'--config.trunk.{field}={theirs}'
                              for field, _, theirs in differ))


def _layers_of(source: dict, model_trunk: dict) -> dict:
  """`source` without the trunk layers the model has none of.

  Trunk modules are 'conv1', 'affine1' and 'layer{k}_{block}'; a layer is
  dropped only as a whole, so a depth mismatch still fails the shape check.
  """
  layers = {name.split('_')[0] for name in model_trunk}
  return {name: tree for name, tree in source.items()
          if name.split('_')[0] in layers}


def replace_subtree(variables: dict, key: str, source: dict, path: str) -> dict:
  """variables[c][key] = source[c] for each collection c, checking shapes."""
  new = {}
  for collection, tree in variables.items():
    tree = dict(tree)
    expected = jax.tree.map(jnp.shape, tree[key])
    got = jax.tree.map(jnp.shape, source.get(collection, {}))
    if expected != got:
      raise ValueError(
          f'{path}: its {collection!r} tree does not fit this model\'s '
          f'{key!r}; check that config.trunk matches the file')
    tree[key] = jax.tree.map(jnp.asarray, source[collection])
    new[collection] = tree
  return new
