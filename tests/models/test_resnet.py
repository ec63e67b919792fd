"""Trunk options: zero/symmetric padding, stride in the 1x1 (MSRA), four
layers, and the norms: frozen after the sum, frozen per conv, GroupNorm."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.families.deepmask.model import deepmask_from_config
from deepmask_jax.models.convolution import PaddedConv
from deepmask_jax.models.resnet import Bottleneck, Trunk
from tests.conftest import tiny_config

TINY = dict(stem_width=8, widths=(4, 8, 8, 8), depths=(1, 2, 1, 1))


def random_variables(module, *inputs, seed=0):
  """Random values for every variable of `module` (constants too, so no
  affine is the identity); shapes from eval_shape, so nothing compiles."""
  shapes = jax.eval_shape(module.init, jax.random.PRNGKey(0), *inputs)
  rng = np.random.default_rng(seed)
  return jax.tree.map(
      lambda x: jnp.asarray(rng.normal(0.5, 0.3, x.shape), jnp.float32), shapes)


@pytest.mark.parametrize('stride', [1, 2])
def test_zero_padding_is_lax_conv_with_zero_pad(stride):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 9, 10, 3))
  conv = PaddedConv(5, 3, stride, padding='zero')
  variables = conv.init(jax.random.PRNGKey(1), x)
  kernel = variables['params']['conv']['kernel']
  bias = variables['params']['conv']['bias']
  expected = jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), ((1, 1), (1, 1)),
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias
  np.testing.assert_allclose(conv.apply(variables, x), expected, atol=1e-5)
  symmetric = PaddedConv(5, 3, stride, padding='symmetric').apply(variables, x)
  assert symmetric.shape == expected.shape
  border = np.abs(np.asarray(symmetric - expected))[:, 0].max()
  interior = np.abs(np.asarray(symmetric - expected))[:, 1:-1, 1:-1].max()
  assert border > 1e-2 and interior < 1e-5


def test_unknown_padding_is_refused():
  with pytest.raises(ValueError, match='padding must be one of'):
    PaddedConv(4, 3, padding='reflect').init(jax.random.PRNGKey(0),
                                             jnp.zeros((1, 4, 4, 2)))


def test_four_layers_give_c3_c4_c5():
  trunk = Trunk(padding='zero', **TINY)
  features, _ = jax.eval_shape(
      lambda: trunk.init_with_output(jax.random.PRNGKey(0),
                                     jnp.zeros((2, 64, 96, 3))))
  shapes = {name: f.shape for name, f in features.items()}
  assert shapes == {'conv1': (2, 32, 48, 8), 'layer1': (2, 16, 24, 16),
                    'layer2': (2, 8, 12, 32), 'layer3': (2, 4, 6, 32),
                    'layer4': (2, 2, 3, 32)}


def test_zero_and_symmetric_trunks_differ_on_the_same_variables():
  images = jax.random.normal(jax.random.PRNGKey(0), (1, 64, 64, 3))
  zero = Trunk(padding='zero', **TINY)
  symmetric = Trunk(padding='symmetric', **TINY)
  variables = random_variables(zero, images)
  a, b = jax.jit(lambda v, x: (zero.apply(v, x)['layer2'],
                               symmetric.apply(v, x)['layer2']))(variables,
                                                                 images)
  assert np.abs(np.asarray(a - b)).max() > 1e-2 * np.abs(np.asarray(a)).max()


def _conv_outputs(stride_in_1x1, variables=None):
  block = Bottleneck(width=4, stride=2, padding='zero',
                     stride_in_1x1=stride_in_1x1)
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 8, 8, 16))
  if variables is None:
    variables = random_variables(block, x)
  out, state = jax.jit(lambda v, x: block.apply(
      v, x, capture_intermediates=True, mutable=['intermediates']))(variables, x)
  convs = {name: state['intermediates'][name]['__call__'][0].shape
           for name in ('conv1', 'conv2', 'conv3', 'projection')}
  return out, convs, variables


def test_stride_in_1x1_moves_the_stride_to_the_first_conv():
  fb_out, fb_convs, variables = _conv_outputs(stride_in_1x1=False)
  msra_out, msra_convs, _ = _conv_outputs(stride_in_1x1=True, variables=variables)
  assert fb_convs == {'conv1': (1, 8, 8, 4), 'conv2': (1, 4, 4, 4),
                      'conv3': (1, 4, 4, 16), 'projection': (1, 4, 4, 16)}
  assert msra_convs == {'conv1': (1, 4, 4, 4), 'conv2': (1, 4, 4, 4),
                        'conv3': (1, 4, 4, 16), 'projection': (1, 4, 4, 16)}
  assert fb_out.shape == msra_out.shape
  assert np.abs(np.asarray(fb_out - msra_out)).max() > 1e-3


def test_deepmask_pads_its_trunk_symmetrically():
  config = tiny_config()
  model = deepmask_from_config(config)
  images = jax.random.normal(jax.random.PRNGKey(0), (1, 64, 64, 3))
  variables = random_variables(model, jnp.zeros((1, 192, 192, 3)))
  kwargs = dict(stem_width=config.trunk.stem_width,
                widths=config.trunk.widths, depths=config.trunk.depths)

  def trunks(variables, images):
    trunk_vars = {c: tree['trunk'] for c, tree in variables.items()}
    return (model.apply(variables, images, method=lambda m, x: m.trunk(x)),
            Trunk(padding='symmetric', **kwargs).apply(trunk_vars, images),
            Trunk(padding='zero', **kwargs).apply(trunk_vars, images))

  ours, symmetric, zero = jax.jit(trunks)(variables, images)
  np.testing.assert_array_equal(ours['layer3'], symmetric['layer3'])
  assert np.abs(np.asarray(ours['layer3'] - zero['layer3'])).max() > 1e-3


def test_group_norm_block_starts_as_its_shortcut():
  """norm 'group': the last GroupNorm's scale starts at zero, so a fresh
  block is relu(normalised projection) whatever its branch computes."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 6))
  block = Bottleneck(width=4, stride=2, padding='zero', norm='group')
  variables = block.init(jax.random.PRNGKey(1), x)
  assert set(variables) == {'params'}
  params = variables['params']
  np.testing.assert_array_equal(params['norm3']['scale'], 0.0)
  projected = jax.lax.conv_general_dilated(
      x, params['projection']['conv']['kernel'], (2, 2), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  groups = projected.reshape(2, 4, 4, 16, 1)  # gcd(32, 16) = 16 groups.
  mean = groups.mean(axis=(1, 2, 4), keepdims=True)
  var = ((groups - mean) ** 2).mean(axis=(1, 2, 4), keepdims=True)
  expected = jax.nn.relu(((groups - mean) / jnp.sqrt(var + 1e-5))
                         .reshape(projected.shape))
  np.testing.assert_allclose(block.apply(variables, x), expected, atol=1e-5)


def test_unknown_trunk_norm_is_refused():
  with pytest.raises(ValueError, match="norm 'batch' is not one of"):
    Trunk(padding='zero', norm='batch', **TINY).init(
        jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))


def _conv(x, variables, stride=1):
  """A trunk conv (1x1 here, so padding does not matter) by hand."""
  kernel, bias = variables['conv']['kernel'], variables['conv']['bias']
  return jax.lax.conv_general_dilated(
      x, kernel, (stride, stride), 'VALID',
      dimension_numbers=('NHWC', 'HWIO', 'NHWC')) + bias


def test_frozen_per_conv_block_keeps_an_affine_after_every_conv():
  """norm 'frozen_per_conv' (the MSRA layout as maskrcnn-benchmark trains
  it): relu(affine3(conv3(.)) + affine_projection(projection(x))), nothing
  after the addition."""
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 8, 8, 6))
  block = Bottleneck(width=4, stride=2, padding='zero', stride_in_1x1=True,
                     norm='frozen_per_conv')
  variables = random_variables(block, x)
  constants = variables['constants']
  assert set(constants) == {'affine1', 'affine2', 'affine3',
                            'affine_projection'}
  params = variables['params']
  affine = lambda y, name: y * constants[name]['scale'] + constants[name]['bias']
  # conv2 is 3x3 (padding): take the block's own conv2 output.
  _, state = block.apply(variables, x, capture_intermediates=True,
                         mutable=['intermediates'])
  after_conv2 = state['intermediates']['conv2']['__call__'][0]
  expected = jax.nn.relu(
      affine(_conv(jax.nn.relu(affine(after_conv2, 'affine2')),
                   params['conv3']), 'affine3')
      + affine(_conv(x, params['projection'], 2), 'affine_projection'))
  np.testing.assert_allclose(block.apply(variables, x), expected,
                             rtol=1e-5, atol=1e-5)


def test_fresh_frozen_layouts_compute_the_same_function():
  """With identity affines (a fresh init) 'frozen' and 'frozen_per_conv'
  share their params and outputs: only converted constants differ."""
  images = jax.random.normal(jax.random.PRNGKey(0), (1, 64, 64, 3))
  after_sum = Trunk(padding='zero', **TINY)
  per_conv = Trunk(padding='zero', norm='frozen_per_conv', **TINY)
  variables = per_conv.init(jax.random.PRNGKey(1), images)
  ours = after_sum.init(jax.random.PRNGKey(1), images)
  assert (jax.tree.structure(ours['params'])
          == jax.tree.structure(variables['params']))
  a = after_sum.apply({'params': variables['params'],
                       'constants': ours['constants']}, images)['layer4']
  b = per_conv.apply(variables, images)['layer4']
  np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)
