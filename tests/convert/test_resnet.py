"""ResNet files -> our Trunk: every layout/variant against the Torch interpreter.

The reference output is the file's module graph after DeepMask's
`updatePadding` (zero padding -> symmetric), i.e. the trunk DeepMask builds
from resnet-50.t7, which is what `config.trunk_init` starts from.
"""

import numpy as np
import pytest

from deepmask_jax.convert import ConversionError, read_t7

from . import torch_reference as reference
from . import torch_trees as trees
from .compare import trunk_errors

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
  images = np.random.default_rng(0).normal(size=(2, 3, 64, 48))
  expected = reference.module_outputs(reference.update_padding(tree), images, 7)
  errors = trunk_errors(conversion.variables, conversion.config, images,
                        expected)
  print('trunk relative errors', errors)
  assert max(errors.values()) < 1e-4, errors


def test_config_and_variables_describe_the_trunk_only(write_file):
  conversion = read_t7(write_file(trees.resnet_file(GEOMETRY, STYLES['released'])))
  assert conversion.kind == 'resnet'
  assert (conversion.config.trunk.stem_width, conversion.config.trunk.widths,
          conversion.config.trunk.depths, conversion.config.trunk.expansion) == (
              GEOMETRY.stem, GEOMETRY.widths, GEOMETRY.depths, 4)
  assert set(conversion.variables['params']) == {'trunk'}
  assert 'layer4_0' not in conversion.variables['params']['trunk']
  assert any('dropped after layer3' in note for note in conversion.notes)


def test_zero_padding_differs_from_what_deepmask_runs(write_file):
  # The comparison above has teeth: the raw ImageNet graph (zero padding)
  # differs from our symmetric-padded trunk at the borders.
  tree = trees.resnet_file(GEOMETRY, STYLES['released'])
  images = np.random.default_rng(0).normal(size=(1, 3, 64, 64))
  raw = reference.module_outputs(tree, images, 7)
  conversion = read_t7(write_file(tree))
  errors = trunk_errors(conversion.variables, conversion.config, images, raw)
  assert errors['layer3'] > 1e-2


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
