"""SharpMask model.t7 -> our SharpMask: outputs, config, refusals."""

import numpy as np
import pytest

from deepmask_jax.convert import ConversionError, read_t7
from deepmask_jax.testing import torch_trees as trees
from deepmask_jax.testing import torch_reference as reference
from deepmask_jax.testing.compare import apply_model, patch_errors

GEOMETRY = trees.Geometry()
WINDOW = GEOMETRY.object_window + 32


def test_patch_form_matches_torch(write_file):
  tree = trees.sharpmask_file(GEOMETRY, seed=7)
  conversion = read_t7(write_file(tree))
  images = np.random.default_rng(2).normal(size=(GEOMETRY.batch, 3, WINDOW,
                                                 WINDOW))
  ours = apply_model(conversion, images)
  errors = patch_errors(ours, *reference.sharpmask_forward(tree['model'], images))
  print('sharpmask relative errors', errors)
  assert max(errors.values()) < 1e-4, errors
  # The mask covers the object window at full resolution (gSz = iSz).
  assert ours['mask'].shape[1:] == (GEOMETRY.object_window,) * 2


def test_config_and_variable_trees(write_file):
  conversion = read_t7(write_file(trees.sharpmask_file(GEOMETRY)))
  config = conversion.config
  assert conversion.kind == 'sharpmask' and config.model == 'sharpmask'
  assert config.refine.km == GEOMETRY.km
  assert config.patch.label_size == GEOMETRY.object_window
  assert set(conversion.variables['params']) == {'deepmask', 'refinement'}
  # DeepMask's own mask head (maskBranchDM) is kept for dense inference.
  assert 'mask_head' in conversion.variables['params']['deepmask']


def test_skip_positions_must_match(write_file):
  tree = trees.sharpmask_file(GEOMETRY)
  tree['model'].fields['skpos'] = [7, 6, 5, 3]  # Uncropped layer3.
  with pytest.raises(ConversionError, match=r'skpos \[7, 6, 5, 3\].*\[8, 6, 5, 3\]'):
    read_t7(write_file(tree))


def test_neths_that_refs_do_not_run_are_refused(write_file):
  tree = trees.sharpmask_file(GEOMETRY)
  neths = tree['model'].fields['neths']
  neths[1], neths[2] = neths[2], neths[1]
  with pytest.raises(ConversionError, match='neths differ from the nets inside refs'):
    read_t7(write_file(tree))


def test_other_horizontal_width_is_refused_with_its_path(write_file):
  tree = trees.sharpmask_file(GEOMETRY)
  builder = trees.Builder(style=trees.TrunkStyle(padding='zero'))
  neth = tree['model'].fields['neths'][3]  # conv1 -> 32 hidden channels.
  # foolwood/deepmask-pytorch's 4th horizontal net is 64 -> 64.
  neth.fields['modules'][2] = builder.conv(GEOMETRY.stem, 64, 3)
  neth.fields['modules'][5] = builder.conv(64, GEOMETRY.km // 8, 3)
  with pytest.raises(ConversionError, match=(
      r'model\.refs\[4\]\.modules\[1\]\.modules\[1\]\.modules\[3\] '
      r'\(cudnn\.SpatialConvolution\): maps 8->64 channels')):
    read_t7(write_file(tree))
