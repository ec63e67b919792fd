"""Initial model variables: fresh, or with a pretrained subtree put in.

Families combine these: DeepMask and EmbedMask fill their 'trunk' from
`config.trunk_init` (a model directory holding a trunk, e.g. fb.resnet.torch's
`resnet-50.t7` converted by `python -m deepmask_jax.convert`); SharpMask fills
its frozen 'deepmask' subtree from a trained DeepMask.
"""

import jax
import jax.numpy as jnp

from deepmask_jax.models.store import load_model


def fresh_variables(model, seed: int, input_shape) -> dict:
  """{'params', 'constants'} of `model` initialised on zeros of `input_shape`."""
  return jax.jit(model.init)(jax.random.PRNGKey(seed), jnp.zeros(input_shape))


def with_pretrained_trunk(variables: dict, trunk_init: str) -> dict:
  """`variables` with its 'trunk' subtree read from the model directory `trunk_init`."""
  if not trunk_init:
    return variables
  trunk_vars, _ = load_model(trunk_init)
  return replace_subtree(variables, 'trunk',
                         {k: v['trunk'] for k, v in trunk_vars.items()},
                         trunk_init)


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
