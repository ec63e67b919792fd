"""Initial model variables: fresh, from converted ImageNet weights, or from DeepMask.

* `config.trunk_init`: a model directory holding a `trunk` subtree, e.g. the
  fb.resnet.torch `resnet-50.t7` converted by `python -m deepmask_jax.convert`
  (BN folded into the trunk's constants). Whole layers the model lacks (layer4
  for DeepMask's trunk through layer3) are left out; the model's own padding
  applies (DeepMask pads symmetrically whatever the file did).
* SharpMask (stage 2): `config.deepmask_checkpoint`, a DeepMask training
  workdir or model directory; its trunk/head config replaces ours so the
  shapes agree, and its variables fill the frozen 'deepmask' subtree.
"""

import jax
import jax.numpy as jnp
import ml_collections

from deepmask_jax.models.store import load_model

# DeepMask config fields a SharpMask inherits from its DeepMask checkpoint.
INHERITED_FIELDS = ('trunk', 'head')
INHERITED_PATCH_FIELDS = ('object_window', 'context', 'mask_size')


def patch_side(config) -> int:
  """wSz: side of a training patch (object window plus context on each side)."""
  return config.patch.object_window + 2 * config.patch.context


def resolve_config(config) -> ml_collections.ConfigDict:
  """For SharpMask, copies the architecture fields of its DeepMask checkpoint."""
  if config.model != 'sharpmask':
    return config
  if not config.deepmask_checkpoint:
    raise ValueError('SharpMask trains on top of a trained DeepMask: set '
                     '--config.deepmask_checkpoint=<DeepMask workdir or model dir>')
  _, deepmask_config = load_model(config.deepmask_checkpoint)
  config = ml_collections.ConfigDict(config.to_dict())
  for field in INHERITED_FIELDS:
    config[field] = deepmask_config[field]
  for field in INHERITED_PATCH_FIELDS:
    config.patch[field] = deepmask_config.patch[field]
  return config


def initial_variables(config, model) -> dict:
  """{'params', 'constants'} for `model`, with pretrained parts filled in."""
  side = patch_side(config)
  variables = jax.jit(model.init)(jax.random.PRNGKey(config.seed),
                                  jnp.zeros((1, side, side, 3)))
  if config.model == 'sharpmask':
    deepmask_vars, _ = load_model(config.deepmask_checkpoint)
    return _replace_subtree(variables, 'deepmask', deepmask_vars,
                            config.deepmask_checkpoint)
  if config.trunk_init:
    trunk_vars, _ = load_model(config.trunk_init)
    source = {c: _layers_of(tree['trunk'], variables[c]['trunk'])
              for c, tree in trunk_vars.items() if c in variables}
    return _replace_subtree(variables, 'trunk', source, config.trunk_init)
  return variables


def _layers_of(source: dict, model_trunk: dict) -> dict:
  """`source` without the trunk layers the model has none of.

  Trunk modules are 'conv1', 'affine1' and 'layer{k}_{block}'; a layer is
  dropped only as a whole, so a depth mismatch still fails the shape check.
  """
  layers = {name.split('_')[0] for name in model_trunk}
  return {name: tree for name, tree in source.items()
          if name.split('_')[0] in layers}


def _replace_subtree(variables: dict, key: str, source: dict, path: str) -> dict:
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

