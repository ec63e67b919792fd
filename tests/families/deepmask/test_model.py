"""DeepMask: reference parameter counts, both forms on the same windows, layers."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.config_schema import get_config
from deepmask_jax.families import build_model
from deepmask_jax.families.deepmask.model import deepmask_from_config
from deepmask_jax.models.convolution import symmetric_pad
from deepmask_jax.models.layers import (align_corners_matrix,
                                        resize_align_corners)
from tests.conftest import tiny_config


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def abstract_variables(model, side=192):
  return jax.eval_shape(lambda: model.init(jax.random.PRNGKey(0),
                                           jnp.zeros((1, side, side, 3))))


def test_resnet50_deepmask_parameter_counts_match_reference():
  params = abstract_variables(deepmask_from_config(get_config()))['params']
  trunk = count(params['trunk']) + count(params['reduce']) + count(params['embed'])
  assert trunk == 15_213_312
  assert count(params['mask_head']) == 1_608_768
  assert count(params['score_hidden_layer']) + count(params['score_out']) == 526_337
  assert count(params) == 17_348_417


def test_frozen_batch_norm_is_constant_not_parameter():
  variables = abstract_variables(deepmask_from_config(get_config()))
  leaves = jax.tree_util.tree_leaves_with_path(variables['params'])
  assert not any('affine' in jax.tree_util.keystr(path) for path, _ in leaves)
  # 53 BN layers up to layer3 minus the 4 projection shortcuts' (none there),
  # each with a scale and a bias per channel.
  assert count(variables['constants']) == 2 * (64 + 3 * (64 + 64 + 256) +
                                                4 * (128 + 128 + 512) +
                                                6 * (256 + 256 + 1024))


def test_patch_form_shapes():
  model = deepmask_from_config(tiny_config())
  variables = model.init(jax.random.PRNGKey(0), jnp.zeros((1, 192, 192, 3)))
  out = model.apply(variables, jnp.zeros((3, 192, 192, 3)))
  assert out['mask'].shape == (3, 112, 112)
  assert out['score'].shape == (3,)


def test_dense_form_equals_patch_form_on_the_same_windows():
  """Dense on a 192-px patch gives a 3x3 map whose centre *is* that patch's
  window (layer3 cells [1, 11)); heads and 10x10 'linear' must agree."""
  model = deepmask_from_config(tiny_config())
  images = jax.random.normal(jax.random.PRNGKey(1), (4, 192, 192, 3))
  variables = model.init(jax.random.PRNGKey(0), images[:1])
  patch = model.apply(variables, images)
  dense = model.apply(variables, images, method='dense')
  assert dense['score'].shape == (4, 3, 3)
  np.testing.assert_allclose(dense['score'][:, 1, 1], patch['score'],
                             rtol=1e-5, atol=1e-5)
  mask = resize_align_corners(dense['mask'][:, 1, 1], (112, 112))
  np.testing.assert_allclose(mask, patch['mask'], rtol=1e-5, atol=1e-5)


def test_dense_form_stride_is_16():
  model = deepmask_from_config(tiny_config())
  variables = abstract_variables(model)
  out = jax.eval_shape(lambda v: model.apply(
      v, jnp.zeros((1, 320, 480, 3)), method='dense'), variables)
  assert out['score'].shape == (1, 320 // 16 - 9, 480 // 16 - 9)
  assert out['mask'].shape == (1, 11, 21, 56, 56)


def test_symmetric_padding_copies_the_edge_pixel():
  x = jnp.arange(4.0).reshape(1, 1, 4, 1)
  row = symmetric_pad(jnp.tile(x, (1, 4, 1, 1)), 2)[0, 2, :, 0]
  np.testing.assert_array_equal(row, [1, 0, 0, 1, 2, 3, 3, 2])


def test_align_corners_resize_keeps_corners_and_interpolates_linearly():
  weights = align_corners_matrix(56, 112)
  np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-6)
  ramp = jnp.tile(jnp.arange(56.0)[None, :], (56, 1))
  out = resize_align_corners(ramp, (112, 112))
  np.testing.assert_allclose(out[0], np.arange(112) * 55 / 111, atol=1e-4)


def test_build_model_rejects_unknown_model():
  config = tiny_config()
  config.model = 'maskrcnn'
  with pytest.raises(ValueError, match='maskrcnn'):
    build_model(config)
