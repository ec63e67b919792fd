"""ResNet files -> our Trunk: every layout/variant against the Torch interpreter.

The converted trunk (through layer4, with the padding the file records)
computes the file's own forward. DeepMask builds the same variables with
symmetric padding: that is the file's module graph after DeepMask's
`updatePadding`, the trunk DeepMask's createTrunk makes of resnet-50.t7.
"""

import numpy as np
import pytest

from deepmask_jax.convert import ConversionError, read_t7
from deepmask_jax.testing import torch_trees as trees
from deepmask_jax.testing import torch_reference as reference
from deepmask_jax.testing.compare import trunk_errors

GEOMETRY = trees.Geometry()
STYLES = {
    'released': trees.TrunkStyle(),
    'resnet_lua': trees.TrunkStyle(layout='resnet_lua', bias=False),
    'released_running_std_nn': trees.TrunkStyle(
        norm='bn_running_std', conv_type='nn.SpatialConvolution'),
    'resnet_lua_legacy_2d_weights': trees.TrunkStyle(
        layout='resnet_lua', conv_type='nn.SpatialConvolution',
        legacy_weights=True),
    'released_views': trees.TrunkStyle(views=True),
    'const_affine_symmetric': trees.TrunkStyle(norm='const_affine',
                                               padding='symmetric'),
    'const_diagonal_no_eps': trees.TrunkStyle(norm='const_diagonal'),
}


@pytest.mark.parametrize('style', STYLES.values(), ids=STYLES.keys())
def test_trunk_matches_torch(write_file, style):
  tree = trees.resnet_file(GEOMETRY, style, seed=3)
  conversion = read_t7(write_file(tree))
  assert conversion.config.trunk.padding == style.padding
  images = np.random.default_rng(0).normal(size=(2, 3, 64, 48))
  expected = reference.module_outputs(tree, images, 8)
  errors = trunk_errors(conversion.variables, conversion.config, images,
                        expected)
  print('trunk relative errors', errors)
  assert len(errors) == 5 and max(errors.values()) < 1e-4, errors


def test_config_and_variables_describe_the_trunk_only(write_file):
  conversion = read_t7(write_file(trees.resnet_file(GEOMETRY, STYLES['released'],
                                                    layer4=(8, 2))))
  assert conversion.kind == 'resnet'
  assert (conversion.config.trunk.stem_width, conversion.config.trunk.widths,
          conversion.config.trunk.depths, conversion.config.trunk.expansion,
          conversion.config.trunk.padding) == (
              GEOMETRY.stem, GEOMETRY.widths + (8,), GEOMETRY.depths + (2,), 4,
              'zero')
  assert set(conversion.variables['params']) == {'trunk'}
  assert 'layer4_1' in conversion.variables['params']['trunk']
  assert any('dropped after layer4' in note for note in conversion.notes)


def test_resnet_through_layer3_converts_to_three_layers(write_file):
  tree = trees.resnet_file(GEOMETRY, STYLES['released'])
  del tree.fields['modules'][7]  # layer4; the pooling and classifier remain.
  conversion = read_t7(write_file(tree))
  assert conversion.config.trunk.widths == GEOMETRY.widths
  assert 'layer4_0' not in conversion.variables['params']['trunk']
  images = np.random.default_rng(1).normal(size=(1, 3, 32, 32))
  errors = trunk_errors(conversion.variables, conversion.config, images,
                        reference.module_outputs(tree, images, 7))
  assert set(errors) == {'conv1', 'layer1', 'layer2', 'layer3'}
  assert max(errors.values()) < 1e-4, errors


def test_symmetric_padding_gives_what_deepmask_runs(write_file):
  # DeepMask pads the converted ImageNet trunk symmetrically (createTrunk's
  # updatePadding); that differs from the file's own zero-padded forward at
  # the borders, so the comparisons above have teeth.
  tree = trees.resnet_file(GEOMETRY, STYLES['released'])
  images = np.random.default_rng(0).normal(size=(1, 3, 64, 64))
  conversion = read_t7(write_file(tree))
  raw = reference.module_outputs(tree, images, 8)
  updated = reference.module_outputs(reference.update_padding(tree), images, 8)
  symmetric = trunk_errors(conversion.variables, conversion.config, images,
                           updated, padding='symmetric')
  assert max(symmetric.values()) < 1e-4, symmetric
  against_raw = trunk_errors(conversion.variables, conversion.config, images,
                             raw, padding='symmetric')
  assert against_raw['layer4'] > 1e-2, against_raw


def test_mixed_padding_is_refused(write_file):
  tree = trees.resnet_file(GEOMETRY, STYLES['released'])
  stem_conv = tree.fields['modules'][0]
  stem_conv.fields.update(padW=0, padH=0)
  tree.fields['modules'][0] = trees.sequential(trees.symmetric_padding(3),
                                               stem_conv)
  with pytest.raises(ConversionError, match='3 symmetrically|1 symmetrically'):
    read_t7(write_file(tree))


def _first_block(tree):
  return tree.fields['modules'][4].fields['modules'][0]


def test_basic_block_is_refused_with_its_path(write_file):
  tree = trees.resnet_file(GEOMETRY, STYLES['released'])
  residual = _first_block(tree).fields['modules'][0].fields['modules'][0]
  del residual.fields['modules'][4:]  # conv, BN, ReLU, conv3x3 only.
  with pytest.raises(ConversionError,
                     match=r'model\.modules\[5\]\.modules\[1\] \(nn\.Sequential\).*'
                     'only bottlenecks'):
    read_t7(write_file(tree))


def test_projection_where_shapes_agree_is_refused(write_file):
  tree = trees.resnet_file(GEOMETRY, STYLES['released'])
  builder = trees.Builder(style=STYLES['released'])
  block = tree.fields['modules'][5].fields['modules'][1]  # Identity shortcut.
  channels = GEOMETRY.widths[1] * 4
  block.fields['modules'][0].fields['modules'][1] = builder.conv(channels,
                                                                 channels, 1)
  with pytest.raises(ConversionError, match=r"modules\[6\]\.modules\[2\].*type 'C'"):
    read_t7(write_file(tree))


def test_stride_on_the_first_1x1_is_refused(write_file):
  tree = trees.resnet_file(GEOMETRY, STYLES['released'])
  block = tree.fields['modules'][5].fields['modules'][0]
  residual = block.fields['modules'][0].fields['modules'][0]
  residual.fields['modules'][0].fields.update(dW=2, dH=2)
  residual.fields['modules'][3].fields.update(dW=1, dH=1)
  with pytest.raises(ConversionError, match=r'modules\[6\].*1x1/2 conv where '
                     'our trunk has 1x1/1'):
    read_t7(write_file(tree))
