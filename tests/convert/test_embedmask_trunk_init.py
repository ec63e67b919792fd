"""A converted fb.resnet.torch ResNet starts an EmbedMask (config.trunk_init)."""

import jax
import numpy as np
import pytest

from deepmask_jax.convert import read_t7
from deepmask_jax.families import get_family
from deepmask_jax.models.store import save_model
from deepmask_jax.testing import torch_trees as trees
from tests.families.embedmask.test_family import tiny_embedmask_config

GEOMETRY = trees.Geometry()


@pytest.fixture
def converted_resnet(write_file, tmp_path):
  tree = trees.resnet_file(GEOMETRY, trees.TrunkStyle(), seed=5, layer4=(8, 1))
  conversion = read_t7(write_file(tree))
  path = str(tmp_path / 'resnet')
  save_model(path, conversion.variables, conversion.config)
  return path, conversion


def embedmask_config(trunk_init, **overrides):
  return tiny_embedmask_config(**{
      'trunk.stem_width': GEOMETRY.stem,
      'trunk.widths': GEOMETRY.widths + (8,),
      'trunk.depths': GEOMETRY.depths + (1,), 'trunk_init': trunk_init,
      **overrides})


def test_embedmask_takes_the_whole_converted_trunk(converted_resnet):
  path, conversion = converted_resnet
  assert conversion.config.trunk.padding == 'zero'  # EmbedMask's padding.
  family = get_family('embedmask')
  config = embedmask_config(path)
  variables = family.init_variables(config, family.build_model(config))
  for collection in ('params', 'constants'):
    source = conversion.variables[collection]['trunk']
    assert 'layer4_0' in variables[collection]['trunk']
    for a, b in zip(jax.tree.leaves(variables[collection]['trunk']),
                    jax.tree.leaves(source)):
      np.testing.assert_array_equal(a, b)


def test_stride_position_mismatch_is_refused(converted_resnet):
  path, _ = converted_resnet
  family = get_family('embedmask')
  config = embedmask_config(path, **{'trunk.stride_in_1x1': True})
  with pytest.raises(ValueError, match='stride_in_1x1'):
    family.init_variables(config, family.build_model(config))
