"""Initial model variables: fresh, or with a pretrained subtree put in.

Families combine these: DeepMask and EmbedMask fill their 'trunk' from
`config.trunk_init` (a model directory holding a trunk, e.g. fb.resnet.torch's
`resnet-50.t7` converted by `python -m deepmask_jax.convert`, BN folded into
the trunk's constants); SharpMask fills its frozen 'deepmask' subtree from a
trained DeepMask. Whole trunk layers the model lacks (layer4 for DeepMask's
trunk through layer3) are left out; the model's own padding applies (DeepMask
pads symmetrically whatever the file did).
"""

import jax
import jax.numpy as jnp

from deepmask_jax.models.store import load_model


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
  must agree, since it changes the function but no shape.
  """
  if not config.trunk_init:
    return variables
  trunk_vars, file_config = load_model(config.trunk_init)
  ours = bool(config.trunk.get('stride_in_1x1', False))
  theirs = bool(file_config.trunk.get('stride_in_1x1', False))
  if ours != theirs:
    raise ValueError(
        f'{config.trunk_init}: its trunk has stride_in_1x1={theirs} but '
        f'config.trunk.stride_in_1x1={ours}; set '
        f'--config.trunk.stride_in_1x1={theirs}')
  source = {c: _layers_of(tree['trunk'], variables[c]['trunk'])
            for c, tree in trunk_vars.items() if c in variables}
  return replace_subtree(variables, 'trunk', source, config.trunk_init)


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
