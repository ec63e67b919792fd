"""DeepMask model.t7 -> our DeepMask: outputs, heads, config, refusals."""

import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.convert import ConversionError, read_t7
from deepmask_jax.families import build_model
from deepmask_jax.testing import torch_trees as trees
from deepmask_jax.testing import torch_reference as reference
from deepmask_jax.testing.compare import apply_model, patch_errors

GEOMETRY = trees.Geometry()
WINDOW = GEOMETRY.object_window + 32  # wSz: the patch side.


@pytest.fixture(scope='module')
def deepmask_file():
  return trees.deepmask_file(GEOMETRY, seed=5)


@pytest.fixture
def converted(deepmask_file, write_file):
  return read_t7(write_file(deepmask_file))


def _patches(count=2, seed=0):
  return np.random.default_rng(seed).normal(size=(count, 3, WINDOW, WINDOW))


@pytest.mark.parametrize('norm', ['const_affine', 'const_diagonal'])
def test_patch_form_matches_torch(write_file, norm):
  tree = trees.deepmask_file(GEOMETRY, norm=norm, seed=5)
  images = _patches()
  ours = apply_model(read_t7(write_file(tree)), images)
  errors = patch_errors(ours, *reference.deepmask_forward(tree['model'], images))
  print('deepmask relative errors', errors)
  assert max(errors.values()) < 1e-4, errors


def test_heads_match_torch_on_random_embeddings(deepmask_file, converted):
  embedding = np.random.default_rng(1).normal(size=(GEOMETRY.batch,
                                                    GEOMETRY.embedding))
  model = deepmask_file['model'].fields
  torch_mask = reference.forward(model['maskBranch'].fields['modules'][0],
                                 embedding)
  torch_score = reference.forward(model['scoreBranch'], embedding)
  flax_model = build_model(converted.config)
  ours_mask = flax_model.apply(converted.variables, jnp.asarray(embedding),
                               method='mask_logits')
  ours_score = flax_model.apply(converted.variables, jnp.asarray(embedding),
                                method='score_logits')
  assert reference.relative_error(
      np.asarray(ours_mask).reshape(torch_mask.shape), torch_mask) < 1e-4
  assert reference.relative_error(ours_score, torch_score[:, 0]) < 1e-4


def test_flatten_order_is_proven_by_the_outputs(converted):
  # Reading the Linear(12800, 512) as (H, W, C) instead of (C, H, W) must
  # change the outputs: the asymmetric weights make the test sensitive.
  images = _patches()
  right = apply_model(converted, images)['score']
  embed = converted.variables['params']['embed']
  size, channels = embed['kernel'].shape[0], embed['kernel'].shape[2]
  torch_weight = embed['kernel'].transpose(3, 2, 0, 1).reshape(-1, channels * size * size)
  embed['kernel'] = torch_weight.reshape(-1, size, size, channels).transpose(1, 2, 3, 0)
  wrong = apply_model(converted, images)['score']
  assert reference.relative_error(wrong, right) > 1e-2


def test_config_comes_from_the_file(converted):
  config = converted.config
  assert converted.kind == 'deepmask' and config.model == 'deepmask'
  assert config.patch.object_window == GEOMETRY.object_window
  assert config.patch.mask_size == GEOMETRY.mask_size
  assert config.patch.label_size == GEOMETRY.label_size
  assert config.head.feature_channels == GEOMETRY.feature_channels
  assert config.head.embedding == GEOMETRY.embedding
  assert config.head.score_hidden == GEOMETRY.score_hidden
  assert config.trunk.widths == GEOMETRY.widths
  assert config.batch_size == GEOMETRY.batch


def test_the_files_epoch_length_sets_the_schedules_steps(deepmask_file,
                                                         write_file):
  # train.lua's 300 epochs with decays after 50 and 120, of maxload batches.
  tree = dict(deepmask_file, config=trees.train_config(GEOMETRY, maxload=500))
  schedule = read_t7(write_file(tree)).config.schedule
  assert schedule.total_steps == 300 * 500
  assert schedule.boundaries == (50 * 500, 120 * 500)


def test_bare_deepmask_object_converts(deepmask_file, write_file):
  conversion = read_t7(write_file(deepmask_file['model']))
  assert conversion.kind == 'deepmask'
  assert conversion.config.patch.label_size == GEOMETRY.label_size


def _trunk_module(tree, *indices):
  module = tree['model'].fields['trunk']
  for index in indices:
    module = module.fields['modules'][index]
  return module


def test_unknown_module_type_is_refused_with_its_path(write_file):
  tree = trees.deepmask_file(GEOMETRY)
  _trunk_module(tree, 5, 0, 3).typename = 'nn.PReLU'  # layer2, 1st block's ReLU.
  with pytest.raises(ConversionError, match=(
      r'model\.trunk\.modules\[6\]\.modules\[1\]\.modules\[4\] \(nn\.PReLU\): '
      'module type not supported')):
    read_t7(write_file(tree))


def test_tensor_of_wrong_shape_is_refused_with_its_path(write_file):
  tree = trees.deepmask_file(GEOMETRY)
  affine = _trunk_module(tree, 1)
  affine.fields['a'] = np.ones(GEOMETRY.stem + 1, np.float32)
  with pytest.raises(ConversionError,
                     match=r'model\.trunk\.modules\[2\] \(inn\.ConstAffine\).*sizes'):
    read_t7(write_file(tree))


def test_linear_of_wrong_width_is_refused(write_file):
  tree = trees.deepmask_file(GEOMETRY)
  linear = _trunk_module(tree, 11)
  weight = linear.fields['weight']
  linear.fields['weight'] = np.zeros((weight.shape[0], weight.shape[1] + 3),
                                     np.float32)
  with pytest.raises(ConversionError, match=r'model\.trunk\.modules\[12\]'):
    read_t7(write_file(tree))


def test_zero_padded_trunk_conv_is_refused(write_file):
  tree = trees.deepmask_file(GEOMETRY)
  wrapped = _trunk_module(tree, 0)  # Sequential{SymPad(3), conv1}.
  conv = wrapped.fields['modules'][1]
  conv.fields.update(padW=3, padH=3)
  tree['model'].fields['trunk'].fields['modules'][0] = conv
  with pytest.raises(ConversionError, match=r'modules\[1\].*pads with zeros'):
    read_t7(write_file(tree))


def test_disagreeing_iSz_is_refused(write_file):
  tree = trees.deepmask_file(GEOMETRY)
  tree['config']['iSz'] = 160
  with pytest.raises(ConversionError, match='iSz = 160'):
    read_t7(write_file(tree))
