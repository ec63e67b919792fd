"""Every form of `Conv` computes what `nn.Conv` computes, values and gradients,
from the same variables (the upsampled-input form what the conv of the
upsampled map computes), with the CPU's speed forms and with XLA's conv (the
forms of GPU and TPU, run here on the CPU); each backend gets its forms; and
the stem's max pool is `nn.max_pool`."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.models import backend_forms
from deepmask_jax.models.convolution import Conv, PaddedConv, channel_matmul
from deepmask_jax.models.layers import (max_pool_3x3_stride2,
                                        upsample_nearest_2x)

# (kernel, stride, padding, input H, W), 4 -> 6 channels: 1x1 at stride 1 and
# 2 (matmul), 3x3 on an odd padded size and 7x7/2 (lax), 3x3 on even padded
# sizes (2x2 blocks, 4 * 6 <= BLOCK_CHANNELS), a 5x5 over one window (one
# matmul) and over a larger map (column shifts).
FORMS = [(1, 1, 0, 7, 9), (1, 2, 0, 7, 9), (3, 1, 1, 7, 9), (7, 2, 3, 11, 12),
         (3, 1, 1, 8, 10), (3, 1, 0, 6, 12), (5, 1, 0, 5, 5), (5, 1, 0, 9, 12),
         (5, 1, 2, 6, 8)]
CPU_FORMS = ['matmul', 'matmul', 'lax', 'lax', 'block', 'block', 'window',
             'columns', 'columns']
BACKENDS = ['cpu', 'gpu', 'tpu']


@pytest.fixture(params=BACKENDS)
def backend(request, monkeypatch):
  """Convs traced in the test take the forms of this backend name."""
  monkeypatch.setattr(jax, 'default_backend', lambda: request.param)
  return request.param


def _form(kernel, stride, padding, height, width, upsampled=False):
  conv = Conv(6, kernel, stride, padding, upsampled=upsampled)
  return conv.form(4, height + 2 * padding, width + 2 * padding)


def test_each_backend_gets_its_forms(backend):
  expected = CPU_FORMS if backend == 'cpu' else ['lax'] * len(FORMS)
  assert [_form(*shape) for shape in FORMS] == expected
  assert _form(3, 1, 1, 5, 7, upsampled=True) == (
      'phase' if backend == 'cpu' else 'upsampled_lax')


def test_forms_of_names_the_backend_whose_forms_are_traced(monkeypatch):
  monkeypatch.setattr(jax, 'default_backend', lambda: 'gpu')
  with backend_forms.forms_of('cpu'):
    assert [_form(*shape) for shape in FORMS] == CPU_FORMS
  assert _form(*FORMS[0]) == 'lax'


def _flax_conv(kernel, stride, padding):
  return nn.Conv(6, (kernel, kernel), (stride, stride),
                 padding=((padding, padding), (padding, padding)),
                 bias_init=nn.initializers.normal(1.0))


@pytest.mark.parametrize('kernel,stride,padding,height,width', FORMS)
@pytest.mark.parametrize('backend', ['cpu', 'gpu'], indirect=True)
def test_conv_equals_flax_conv_and_its_gradients(backend, kernel, stride,
                                                 padding, height, width):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, height, width, 4))
  reference = _flax_conv(kernel, stride, padding)
  variables = reference.init(jax.random.PRNGKey(1), x)
  ours = Conv(6, kernel, stride, padding)
  # Same variable tree, and the same initial values from the same key.
  ours_init = ours.init(jax.random.PRNGKey(1), x)
  assert (jax.tree.map(jnp.shape, ours_init)
          == jax.tree.map(jnp.shape, variables))
  np.testing.assert_array_equal(ours_init['params']['kernel'],
                                variables['params']['kernel'])
  np.testing.assert_allclose(ours.apply(variables, x),
                             reference.apply(variables, x), atol=1e-5)

  weights = jax.random.normal(jax.random.PRNGKey(2),
                              reference.apply(variables, x).shape)

  def loss(module):
    # Not a plain sum: a ReLU chain downstream, as in the trunk.
    return lambda v, x: jnp.sum(jax.nn.relu(module.apply(v, x)) * weights)

  expected = jax.grad(loss(reference), argnums=(0, 1))(variables, x)
  actual = jax.grad(loss(ours), argnums=(0, 1))(variables, x)
  for a, e in zip(jax.tree.leaves(actual), jax.tree.leaves(expected)):
    np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


def test_conv_without_bias_has_no_bias_variable():
  variables = Conv(3, 1, use_bias=False).init(jax.random.PRNGKey(0),
                                              jnp.ones((1, 4, 4, 2)))
  assert set(variables['params']) == {'kernel'}


def test_channel_matmul_in_bfloat16_keeps_dtypes_and_float32_output():
  x = jnp.ones((2, 3, 3, 4), jnp.bfloat16)
  kernel = jnp.ones((4, 5), jnp.bfloat16)
  bias = jnp.zeros((5,), jnp.float32)
  y, pullback = jax.vjp(channel_matmul, x, kernel, bias)
  assert y.dtype == jnp.float32
  dx, dkernel, dbias = pullback(jnp.ones_like(y))
  assert (dx.dtype, dkernel.dtype, dbias.dtype) == (
      jnp.bfloat16, jnp.bfloat16, jnp.float32)
  np.testing.assert_allclose(np.float32(dkernel), 18.0)  # 2*3*3 positions.
  np.testing.assert_allclose(dbias, 18.0)


@pytest.mark.parametrize('height,width', [(8, 8), (7, 10)])
def test_stem_max_pool_equals_flax_max_pool(height, width):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, height, width, 3))
  expected = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
  np.testing.assert_array_equal(max_pool_3x3_stride2(x), expected)
  # Without ties the gradients agree too.
  grad = lambda pool: jax.grad(lambda x: jnp.sum(pool(x) ** 2))(x)
  np.testing.assert_allclose(
      grad(max_pool_3x3_stride2),
      grad(lambda x: nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))),
      atol=1e-6)


def test_stem_max_pool_uses_reduce_window_off_cpu_only(backend):
  x = jnp.zeros((1, 9, 8, 3))
  # A fresh function: traces are cached per function, not per backend.
  traced = str(jax.make_jaxpr(lambda x: max_pool_3x3_stride2(x))(x))
  assert ('reduce_window_max' in traced) == (backend != 'cpu')


@pytest.mark.parametrize('padding', ['symmetric', 'zero'])
@pytest.mark.parametrize('backend', ['cpu', 'gpu'], indirect=True)
def test_upsampled_conv_equals_the_conv_of_the_upsampled_map(backend, padding):
  x = jax.random.normal(jax.random.PRNGKey(0), (2, 5, 7, 3))
  ours = PaddedConv(4, 3, padding=padding, upsampled=True)
  plain = PaddedConv(4, 3, padding=padding)
  variables = ours.init(jax.random.PRNGKey(1), x)
  expected = lambda v, x: plain.apply(v, upsample_nearest_2x(x))
  np.testing.assert_allclose(ours.apply(variables, x), expected(variables, x),
                             atol=1e-5)
  grads = lambda f: jax.tree.leaves(jax.grad(
      lambda v, x: jnp.sum(jnp.sin(f(v, x))), (0, 1))(variables, x))
  for a, e in zip(grads(ours.apply), grads(expected)):
    np.testing.assert_allclose(a, e, rtol=1e-4, atol=1e-4)


def test_upsampled_input_needs_a_3x3_stride_1_conv():
  with pytest.raises(ValueError, match='3x3 stride-1'):
    Conv(2, 5, upsampled=True).init(jax.random.PRNGKey(0),
                                    jnp.ones((1, 6, 6, 2)))
