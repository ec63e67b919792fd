"""EmbedMask: reference parameter counts, output contract, init, positions."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.families.embedmask.model import (EmbedMask, Tower,
                                          embedmask_from_config, frozen_mask,
                                          frozen_trunk_paths)
from deepmask_jax.models.layers import upsample_bilinear_2x
from tests.conftest import tiny_config

HEIGHT, WIDTH = 64, 96
TINY = dict(num_classes=3, embed_dim=5, stem_width=8, widths=(4, 8, 8, 8),
            depths=(1, 1, 1, 1), fpn_channels=16, num_convs=2)


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def num_locations(height, width) -> int:
  return sum(h * w for h, w in fcos_geometry.level_shapes(height, width))


@pytest.fixture(scope='module')
def tiny():
  """(model, variables, images, outputs) of a tiny EmbedMask on 2 x 64x96."""
  model = EmbedMask(**TINY)
  images = jax.random.normal(jax.random.PRNGKey(0), (2, HEIGHT, WIDTH, 3))
  # An 'rbg' key: XLA compiles threefry's init on CPU about 2x slower.
  outputs, variables = jax.jit(model.init_with_output)(
      jax.random.key(1, impl='rbg'), images)
  return model, variables, images, jax.jit(model.apply), outputs


def test_full_width_parameter_counts_match_reference():
  variables = jax.eval_shape(EmbedMask().init, jax.random.PRNGKey(0),
                             jnp.zeros((1, 64, 64, 3)))
  params = variables['params']
  assert set(params) == {'trunk', 'fpn', 'head'}
  assert count(params['fpn']) == 3_868_672
  assert count(params['head']) == 7_393_680
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  assert 'trunk' in variables['constants'] and 'trunk' not in variables.get(
      'batch_stats', {})


def test_output_contract(tiny):
  _, _, _, _, out = tiny
  num = num_locations(HEIGHT, WIDTH)
  assert num == 8 * 12 + 4 * 6 + 2 * 3 + 1 * 2 + 1 * 1
  shapes = {name: x.shape for name, x in out.items()}
  assert shapes == {'cls_logits': (2, num, 3), 'box_regression': (2, num, 4),
                    'centerness': (2, num), 'proposal_embedding': (2, num, 5),
                    'proposal_margin': (2, num, 5),
                    'pixel_embedding': (2, HEIGHT // 4, WIDTH // 4, 5)}
  assert all(x.dtype == jnp.float32 for x in out.values())
  assert np.all(np.asarray(out['box_regression']) >= 0)
  assert np.all(np.asarray(out['proposal_margin']) > 0)


def test_bfloat16_computes_in_bfloat16_and_returns_float32():
  model = EmbedMask(**TINY, dtype=jnp.bfloat16)
  images = jnp.zeros((1, 64, 64, 3))
  variables = jax.eval_shape(model.init, jax.random.PRNGKey(0), images)
  assert all(x.dtype == jnp.float32 for x in jax.tree.leaves(variables))
  out = jax.eval_shape(model.apply, variables, images)
  assert all(x.dtype == jnp.float32 for x in out.values())
  hlo = jax.jit(model.apply).lower(variables, images).as_text()
  assert 'bf16' in hlo


def test_init_biases_and_margin_prior(tiny):
  _, variables, _, _, out = tiny
  head = variables['params']['head']
  np.testing.assert_allclose(head['cls_logits']['bias'], -math.log(99),
                             rtol=1e-6)
  np.testing.assert_allclose(head['proposal_margin']['bias'], -1.7528,
                             atol=1e-4)
  for name in ('bbox_pred', 'centerness', 'proposal_spatial', 'pixel_other'):
    assert not np.any(head[name]['bias'])
    np.testing.assert_allclose(np.std(head[name]['kernel']), 0.01, rtol=0.3)
  # At init, a pixel at embedding distance 2 from a proposal has P = 0.5.
  margin = np.asarray(out['proposal_margin'])
  for direction in np.eye(5):
    distance_sq = (2 * direction) ** 2
    probability = np.exp(-(margin * distance_sq).sum(-1))
    np.testing.assert_allclose(probability, 0.5, atol=5e-3)


def _with(variables, path, value):
  """A copy of `variables` with params at `path` (a tuple of keys) set."""
  params = jax.tree_util.tree_map_with_path(
      lambda p, x: jnp.full_like(x, value) if tuple(
          k.key for k in p[:len(path)]) == path else x, variables['params'])
  return dict(variables, params=params)


def test_spatial_channels_carry_scaled_locations(tiny):
  _, variables, images, apply, _ = tiny
  for conv in ('proposal_spatial', 'pixel_spatial'):
    variables = _with(variables, ('head', conv), 0.0)
  variables = _with(variables, ('head', 'position_scale'), 2.0)
  out = apply(variables, images)
  xy, _, _ = fcos_geometry.locations(HEIGHT, WIDTH)
  np.testing.assert_allclose(out['proposal_embedding'][0, :, :2],
                             2 * xy / 100, rtol=1e-6)
  # P3's x = 8j + 4 upsampled (half-pixel) to stride 4: 4j + 2, the centre
  # of stride-4 cell j, clamped to P3's first and last centres at the borders.
  pixel_x = np.asarray(out['pixel_embedding'][1, 3, :, 0]) * 100 / 2
  expected = np.clip(4 * np.arange(WIDTH // 4) + 2, 4, WIDTH - 4)
  np.testing.assert_allclose(pixel_x, expected, rtol=1e-5)
  pixel_y = np.asarray(out['pixel_embedding'][0, :, 5, 1]) * 100 / 2
  expected = np.clip(4 * np.arange(HEIGHT // 4) + 2, 4, HEIGHT - 4)
  np.testing.assert_allclose(pixel_y, expected, rtol=1e-5)


def test_scales_act_per_level(tiny):
  _, variables, images, apply, _ = tiny
  # The same compiled program before and after (init_with_output is another
  # program and may round differently); a round-off tolerance all the same.
  before = apply(variables, images)
  variables = _with(variables, ('head', 'box_scales_1'), 0.0)
  variables = _with(variables, ('head', 'margin_scales_0'), 0.0)
  after = apply(variables, images)
  _, _, level = fcos_geometry.locations(HEIGHT, WIDTH)
  boxes = np.asarray(after['box_regression'])
  assert not np.any(boxes[:, level == 1])
  np.testing.assert_allclose(boxes[:, level != 1],
                             before['box_regression'][:, level != 1],
                             rtol=1e-6, atol=1e-6)
  margin = np.asarray(after['proposal_margin'])
  np.testing.assert_allclose(margin[:, level == 0, :2], 1.0)
  np.testing.assert_allclose(margin[:, level == 0, 2:],
                             before['proposal_margin'][:, level == 0, 2:],
                             rtol=1e-6, atol=1e-6)
  np.testing.assert_allclose(margin[:, level != 0],
                             before['proposal_margin'][:, level != 0],
                             rtol=1e-6, atol=1e-6)


def _pytorch_bilinear_2x(x):
  """F.interpolate(scale_factor=2, mode='bilinear', align_corners=False) on
  [H, W] (PyTorch's upsample_bilinear2d formula)."""
  def axis_weights(size_in):
    out = np.arange(2 * size_in)
    src = np.maximum((out + 0.5) / 2 - 0.5, 0)
    low = np.floor(src).astype(int)
    high = np.minimum(low + 1, size_in - 1)
    frac = src - low
    weights = np.zeros((2 * size_in, size_in))
    weights[out, low] += 1 - frac
    weights[out, high] += frac
    return weights
  return axis_weights(x.shape[0]) @ x @ axis_weights(x.shape[1]).T


@pytest.mark.parametrize('shape', [(4, 6), (3, 5), (1, 4), (2, 1)])
def test_bilinear_2x_matches_pytorch_half_pixel(shape):
  x = np.random.default_rng(0).normal(size=(2,) + shape + (3,))
  ours = np.asarray(upsample_bilinear_2x(jnp.asarray(x, jnp.float32)))
  for b in range(2):
    for c in range(3):
      np.testing.assert_allclose(ours[b, ..., c],
                                 _pytorch_bilinear_2x(x[b, ..., c]), atol=1e-5)


def _group_norm_relu_numpy(x, groups, eps):
  b, h, w, c = x.shape
  g = x.reshape(b, h, w, groups, c // groups)
  mean = g.mean(axis=(1, 2, 4), keepdims=True)
  var = g.var(axis=(1, 2, 4), keepdims=True)
  return np.maximum(((g - mean) / np.sqrt(var + eps)).reshape(x.shape), 0)


def test_tower_group_norm_uses_pytorch_eps():
  # Inputs small enough that eps 1e-5 vs Flax's 1e-6 changes the output.
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 6, 6, 8)) * 1e-2
  tower = Tower(channels=8, num_convs=1, norm_groups=32)
  variables = tower.init(jax.random.PRNGKey(1), x)
  conv = variables['params']['conv0']
  y = jax.lax.conv_general_dilated(x, conv['kernel'], (1, 1), ((1, 1), (1, 1)),
                                   dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  y = np.asarray(y + conv['bias'], np.float64)
  ours = np.asarray(tower.apply(variables, x))
  np.testing.assert_allclose(ours, _group_norm_relu_numpy(y, 8, 1e-5),
                             atol=1e-4)
  assert np.abs(ours - _group_norm_relu_numpy(y, 8, 1e-6)).max() > 0.1


def test_tower_group_norm_variance_is_two_pass():
  # Mean 50, std 3e-3: E[x^2] - E[x]^2 in float32 is off by about half the
  # variance here; PyTorch's (and a two-pass) variance keeps it.
  rng = np.random.default_rng(0)
  x = (50 + 3e-3 * rng.standard_normal((2, 8, 8, 16))).astype(np.float32)
  tower = Tower(channels=16, num_convs=1, norm_groups=4)
  variables = tower.init(jax.random.PRNGKey(1), x)
  identity = np.zeros((3, 3, 16, 16), np.float32)
  identity[1, 1] = np.eye(16)  # The conv passes x on unchanged.
  params = dict(variables['params'],
                conv0={'kernel': jnp.asarray(identity),
                       'bias': jnp.zeros(16)})
  ours = np.asarray(tower.apply(dict(variables, params=params), x))
  expected = _group_norm_relu_numpy(x.astype(np.float64), 4, 1e-5)
  error = np.abs(ours - expected).max() / np.abs(expected).max()
  assert error < 5e-3, error


def test_frozen_paths_follow_freeze_conv_body_at(tiny):
  _, variables, _, _, _ = tiny
  assert frozen_trunk_paths(0) == ()
  assert frozen_trunk_paths(2) == ('trunk/conv1/', 'trunk/layer1_')
  mask = frozen_mask(variables['params'], 2)
  frozen = {jax.tree_util.keystr(p) for p, x in
            jax.tree_util.tree_leaves_with_path(mask) if x}
  assert frozen == {"['trunk']['conv1']['conv']['kernel']",
                    "['trunk']['conv1']['conv']['bias']"} | {
                        f"['trunk']['layer1_0']['{conv}']['conv']['{leaf}']"
                        for conv in ('conv1', 'conv2', 'conv3', 'projection')
                        for leaf in ('kernel', 'bias')}


def test_from_config():
  config = tiny_config(**{'trunk.widths': (4, 8, 8, 8),
                          'trunk.depths': (1, 1, 1, 1),
                          'trunk.stride_in_1x1': True,
                          'embedmask.fpn_channels': 16,
                          'embedmask.num_convs': 1,
                          'embedmask.num_classes': 2,
                          'embedmask.embed_dim': 4})
  model = embedmask_from_config(config)
  assert (model.stride_in_1x1, model.fpn_channels, model.num_classes,
          model.embed_dim, model.widths) == (True, 16, 2, 4, (4, 8, 8, 8))
  out = jax.eval_shape(model.init_with_output, jax.random.PRNGKey(0),
                       jnp.zeros((1, 64, 64, 3)))[0]
  assert out['pixel_embedding'].shape == (1, 16, 16, 4)
  with pytest.raises(ValueError, match='four-layer trunk'):
    jax.eval_shape(embedmask_from_config(tiny_config()).init,
                   jax.random.PRNGKey(0), jnp.zeros((1, 64, 64, 3)))
