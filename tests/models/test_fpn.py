"""FPN P3..P7: the reference's parameter count, a numpy forward, init."""

import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.models.fpn import FPN


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def _conv_numpy(x, kernel, bias, stride=1):
  """Zero-padded 'same' conv, NHWC/HWIO, float64, as PyTorch's Conv2d."""
  k = kernel.shape[0]
  pad = (k - 1) // 2
  x = np.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)))
  windows = np.lib.stride_tricks.sliding_window_view(x, (k, k), axis=(1, 2))
  windows = windows[:, ::stride, ::stride]  # [B, H', W', C, k, k]
  return np.einsum('bhwcij,ijco->bhwo', windows, kernel) + bias


def _fpn_numpy(params, c3, c4, c5):
  p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)
  conv = lambda name, x, stride=1: _conv_numpy(x, p[name]['kernel'],
                                               p[name]['bias'], stride)
  inner5 = conv('lateral5', c5)
  up = lambda x, like: x.repeat(2, 1).repeat(2, 2)[:, :like.shape[1],
                                                   :like.shape[2]]
  lateral4 = conv('lateral4', c4)
  inner4 = lateral4 + up(inner5, lateral4)
  lateral3 = conv('lateral3', c3)
  inner3 = lateral3 + up(inner4, lateral3)
  p5 = conv('output5', inner5)
  p6 = conv('p6', p5, 2)
  p7 = conv('p7', np.maximum(p6, 0), 2)
  return [conv('output3', inner3), conv('output4', inner4), p5, p6, p7]


def test_full_width_parameter_count_matches_reference():
  c3, c4, c5 = (jnp.zeros((1, 8 // s, 8 // s, c)) for s, c in
                ((1, 512), (2, 1024), (4, 2048)))
  variables = jax.eval_shape(FPN(256).init, jax.random.PRNGKey(0), c3, c4, c5)
  assert count(variables['params']) == 3_868_672
  assert set(variables['params']) == {'lateral3', 'lateral4', 'lateral5',
                                      'output3', 'output4', 'output5', 'p6',
                                      'p7'}


def test_levels_have_fcos_geometry_shapes():
  height, width = 64, 96
  rng = np.random.default_rng(0)
  inputs = [jnp.asarray(rng.normal(size=(2, height // s, width // s, c)),
                        jnp.float32) for s, c in ((8, 6), (16, 7), (32, 5))]
  levels, _ = jax.eval_shape(lambda: FPN(4).init_with_output(
      jax.random.PRNGKey(0), *inputs))
  assert [p.shape[1:3] for p in levels] == fcos_geometry.level_shapes(
      height, width)
  assert all(p.shape[-1] == 4 for p in levels)


def test_forward_matches_numpy_with_odd_sizes():
  # Odd sizes make the top-down path crop and P6/P7 round up.
  rng = np.random.default_rng(1)
  c3, c4, c5 = (rng.normal(size=shape) for shape in
                ((2, 5, 7, 3), (2, 3, 4, 5), (2, 2, 2, 6)))
  fpn = FPN(4)
  inputs = [jnp.asarray(c, jnp.float32) for c in (c3, c4, c5)]
  shapes = jax.eval_shape(fpn.init, jax.random.PRNGKey(0), *inputs)['params']
  params = jax.tree.map(lambda a: jnp.asarray(rng.normal(0, 0.3, a.shape),
                                              jnp.float32), shapes)
  ours = jax.jit(fpn.apply)({'params': params}, *inputs)
  expected = _fpn_numpy(params, c3, c4, c5)
  assert [p.shape for p in ours] == [e.shape for e in expected]
  assert [e.shape[1:3] for e in expected] == [(5, 7), (3, 4), (2, 2), (1, 1),
                                              (1, 1)]
  for got, want in zip(ours, expected):
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_init_is_kaiming_uniform_a1_with_zero_bias():
  inputs = [jnp.zeros((1, 8 // s, 8 // s, 64)) for s in (1, 2, 4)]
  params = jax.jit(FPN(64).init)(jax.random.PRNGKey(0), *inputs)['params']
  for name, conv in params.items():
    kernel = np.asarray(conv['kernel'])
    fan_in = np.prod(kernel.shape[:3])
    bound = np.sqrt(3.0 / fan_in)
    assert np.abs(kernel).max() <= bound
    assert np.abs(kernel).max() > 0.95 * bound, name
    np.testing.assert_allclose(kernel.std(), bound / np.sqrt(3), rtol=0.1)
    assert not np.any(conv['bias'])
