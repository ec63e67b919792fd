"""Random EmbedMask state dicts / Detectron blobs and a numpy forward of the
PyTorch modules they belong to.

The forward follows fcos_core (EmbedMask V3 HEAD and the May 2020 V2 head) in
PyTorch semantics: NCHW, OIHW, FrozenBatchNorm2d without eps, caffe2
AffineChannel, GroupNorm (eps 1e-5; gcd(32, C) groups, as our tiny widths
need), `F.interpolate` nearest x2 in the FPN and bilinear x2
(align_corners=False) for the pixel embedding. It reads tensors by their
PyTorch/caffe2 names and shares no code with the converter or the Flax
models. float64 throughout.
"""

import collections
import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class Geometry:
  stem: int = 8
  widths: tuple = (2, 4, 8, 16)  # Growing: maskrcnn projects only then.
  depths: tuple = (2, 1, 1, 1)
  expansion: int = 4
  fpn: int = 8
  num_convs: int = 2
  num_classes: int = 3
  embed_dim: int = 5


# ---------------------------------------------------------------- weights


def _bn(rng, prefix, channels, out):
  out[f'{prefix}.weight'] = rng.uniform(0.5, 1.5, channels)
  out[f'{prefix}.bias'] = rng.normal(0, 0.1, channels)
  out[f'{prefix}.running_mean'] = rng.normal(0, 0.1, channels)
  out[f'{prefix}.running_var'] = rng.uniform(0.5, 2.0, channels)


def _conv(rng, key, o, i, k, out, bias=True, std=None):
  std = math.sqrt(2.0 / (i * k * k)) if std is None else std
  out[f'{key}.weight'] = rng.normal(0, std, (o, i, k, k))
  if bias:
    out[f'{key}.bias'] = rng.normal(0, 0.1, o)


def body_state(g: Geometry, rng, prefix='backbone.body.') -> dict:
  """maskrcnn-benchmark ResNet (FrozenBN) tensors."""
  out = {}
  _conv(rng, f'{prefix}stem.conv1', g.stem, 3, 7, out, bias=False)
  _bn(rng, f'{prefix}stem.bn1', g.stem, out)
  in_ch = g.stem
  for layer, (width, depth) in enumerate(zip(g.widths, g.depths), 1):
    for block in range(depth):
      m = f'{prefix}layer{layer}.{block}'
      out_ch = width * g.expansion
      for name, o, i, k in (('1', width, in_ch, 1), ('2', width, width, 3),
                            ('3', out_ch, width, 1)):
        _conv(rng, f'{m}.conv{name}', o, i, k, out, bias=False)
        _bn(rng, f'{m}.bn{name}', o, out)
      if in_ch != out_ch:
        _conv(rng, f'{m}.downsample.0', out_ch, in_ch, 1, out, bias=False)
        _bn(rng, f'{m}.downsample.1', out_ch, out)
      in_ch = out_ch
  return out


def embedmask_state(g: Geometry, seed: int, version: int = 3) -> dict:
  """An EmbedMask state dict (float32) with random, asymmetric values."""
  rng = np.random.default_rng(seed)
  out = body_state(g, rng)
  f = 'backbone.fpn.'
  for level in (2, 3, 4):
    _conv(rng, f'{f}fpn_inner{level}', g.fpn,
          g.widths[level - 1] * g.expansion, 1, out)
    _conv(rng, f'{f}fpn_layer{level}', g.fpn, g.fpn, 3, out)
  for name in ('p6', 'p7'):
    _conv(rng, f'{f}top_blocks.{name}', g.fpn, g.fpn, 3, out)
  h = 'rpn.head.'
  for tower in ('cls_tower', 'bbox_tower', 'mask_tower'):
    for i in range(g.num_convs):
      _conv(rng, f'{h}{tower}.{3 * i}', g.fpn, g.fpn, 3, out)
      out[f'{h}{tower}.{3 * i + 1}.weight'] = rng.uniform(0.5, 1.5, g.fpn)
      out[f'{h}{tower}.{3 * i + 1}.bias'] = rng.normal(0, 0.1, g.fpn)
  d = g.embed_dim
  for name, o in (('cls_logits', g.num_classes), ('bbox_pred', 4),
                  ('centerness', 1), ('proposal_spatial_embed_pred', 2),
                  ('proposal_other_embed_pred', d - 2),
                  ('pixel_spatial_embed_pred', 2),
                  ('pixel_other_embed_pred', d - 2),
                  ('proposal_margin_pred', d if version == 3 else 1)):
    _conv(rng, f'{h}{name}', o, g.fpn, 3, out, std=0.1)
  for level in range(5):
    out[f'{h}scales.{level}.scale'] = rng.uniform(0.5, 1.5, 1)
    if version == 3:
      out[f'{h}margin_scales.{level}.scale'] = rng.uniform(0.5, 1.5, 1)
  out[f'{h}position_scale.scale'] = rng.uniform(0.5, 1.5, 1)
  return collections.OrderedDict(
      (k, np.asarray(v, np.float32)) for k, v in out.items())


def caffe2_blobs(g: Geometry, seed: int) -> tuple:
  """(blobs, state): Detectron's R-50.pkl blobs (AffineChannel, plus the
  fc1000 classifier and conv1_b) and the FrozenBN state dict (no prefix)
  they equal."""
  rng = np.random.default_rng(seed)
  state = {k: np.asarray(v, np.float32) for k, v in
           body_state(g, rng, prefix='').items()}
  blobs = {}
  for key, value in state.items():
    module, name = key.rsplit('.', 1)
    blob = _caffe2_name(module)
    if name == 'weight' and not blob.endswith('_bn'):
      blobs[f'{blob}_w'] = value
    elif name == 'weight':  # AffineChannel: the FrozenBN folded.
      scale = value / np.sqrt(state[f'{module}.running_var'].astype(float))
      blobs[f'{blob}_s'] = scale
      blobs[f'{blob}_b'] = (state[f'{module}.bias'] -
                            state[f'{module}.running_mean'] * scale)
  blobs['conv1_b'] = rng.normal(0, 1e-9, g.stem)  # In MSRA files, unused.
  blobs['fc1000_w'] = rng.normal(size=(10, g.widths[-1] * g.expansion))
  blobs['fc1000_b'] = rng.normal(size=10)
  return {k: np.asarray(v, np.float32) for k, v in blobs.items()}, state


def _caffe2_name(module: str) -> str:
  if module.startswith('stem.'):
    return 'conv1' if module == 'stem.conv1' else 'res_conv1_bn'
  layer, block, name = module.split('.', 2)
  stage = f'res{int(layer[5:]) + 1}_{block}_'
  return stage + {'conv1': 'branch2a', 'bn1': 'branch2a_bn',
                  'conv2': 'branch2b', 'bn2': 'branch2b_bn',
                  'conv3': 'branch2c', 'bn3': 'branch2c_bn',
                  'downsample.0': 'branch1',
                  'downsample.1': 'branch1_bn'}[name]


# ---------------------------------------------------------------- forward


def conv2d(x, weight, bias=None, stride=1, padding=0):
  kh, kw = weight.shape[2:]
  x = np.pad(x, ((0, 0), (0, 0), (padding,) * 2, (padding,) * 2))
  windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
  windows = windows[:, :, ::stride, ::stride]
  out = np.einsum('bchwij,ocij->bohw', windows, weight, optimize=True)
  return out if bias is None else out + bias[None, :, None, None]


def _relu(x):
  return np.maximum(x, 0)


def _channels(v):
  return v[None, :, None, None]


def frozen_bn(t, m, x):
  """maskrcnn-benchmark FrozenBatchNorm2d (no eps)."""
  scale = t[f'{m}.weight'] / np.sqrt(t[f'{m}.running_var'])
  shift = t[f'{m}.bias'] - t[f'{m}.running_mean'] * scale
  return x * _channels(scale) + _channels(shift)


def group_norm(x, weight, bias, eps=1e-5):
  b, c, h, w = x.shape
  groups = math.gcd(32, c)
  y = x.reshape(b, groups, -1)
  y = (y - y.mean(-1, keepdims=True)) / np.sqrt(y.var(-1, keepdims=True) + eps)
  return y.reshape(b, c, h, w) * _channels(weight) + _channels(bias)


def max_pool_3x3_s2(x):
  x = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=-np.inf)
  windows = np.lib.stride_tricks.sliding_window_view(x, (3, 3), axis=(2, 3))
  return windows[:, :, ::2, ::2].max(axis=(4, 5))


def _bilinear_matrix(size_in):
  """F.interpolate(scale_factor=2, bilinear, align_corners=False), 1-D."""
  out = np.zeros((2 * size_in, size_in))
  for o in range(2 * size_in):
    src = max((o + 0.5) / 2 - 0.5, 0.0)
    i0 = int(math.floor(src))
    i1 = min(i0 + 1, size_in - 1)
    out[o, i0] += 1 - (src - i0)
    out[o, i1] += src - i0
  return out


def upsample_bilinear_2x(x):
  rows, cols = _bilinear_matrix(x.shape[2]), _bilinear_matrix(x.shape[3])
  return np.einsum('ih,bchw,jw->bcij', rows, x, cols)


def resnet_body(t, x, norm, g: Geometry, prefix=''):
  """ResNet with STRIDE_IN_1X1 -> [C2, C3, C4, C5]; `norm(t, module, x)`."""
  w = lambda m: t[f'{prefix}{m}.weight']
  x = _relu(norm(t, f'{prefix}stem.bn1', conv2d(x, w('stem.conv1'), None, 2,
                                                3)))
  x = max_pool_3x3_s2(x)
  features = []
  for layer, depth in enumerate(g.depths, 1):
    for block in range(depth):
      m = f'layer{layer}.{block}'
      stride = 2 if layer > 1 and block == 0 else 1
      n = lambda name, y: norm(t, f'{prefix}{m}.{name}', y)
      y = _relu(n('bn1', conv2d(x, w(f'{m}.conv1'), None, stride)))
      y = _relu(n('bn2', conv2d(y, w(f'{m}.conv2'), None, 1, 1)))
      y = n('bn3', conv2d(y, w(f'{m}.conv3')))
      if f'{prefix}{m}.downsample.0.weight' in t:
        x = n('downsample.1', conv2d(x, w(f'{m}.downsample.0'), None, stride))
      x = _relu(y + x)
    features.append(x)
  return features


def _fpn(t, c3, c4, c5):
  f = 'backbone.fpn.'
  conv = lambda name, x, stride=1: conv2d(
      x, t[f'{f}{name}.weight'], t[f'{f}{name}.bias'], stride,
      t[f'{f}{name}.weight'].shape[-1] // 2)
  inner = conv('fpn_inner4', c5)
  results = [conv('fpn_layer4', inner)]
  for level, c in ((3, c4), (2, c3)):
    top_down = inner.repeat(2, axis=2).repeat(2, axis=3)
    inner = conv(f'fpn_inner{level}', c) + top_down
    results.insert(0, conv(f'fpn_layer{level}', inner))
  p6 = conv('top_blocks.p6', results[-1], 2)
  return results + [p6, conv('top_blocks.p7', _relu(p6), 2)]


def _locations(h, w, stride):
  ys, xs = np.meshgrid(np.arange(h) * stride, np.arange(w) * stride,
                       indexing='ij')
  return np.stack([xs, ys]) + stride // 2  # [2, h, w]: (x, y).


def embedmask_forward(t, images, g: Geometry, strides=(8, 16, 32, 64, 128),
                      version=3) -> dict:
  """The head's outputs per level (boxes in stride units, as in training)
  and the stride-4 pixel embedding (upsampled as at inference)."""
  t = {k: v.astype(np.float64) for k, v in t.items()}
  _, c3, c4, c5 = resnet_body(t, images, frozen_bn, g, 'backbone.body.')
  h = 'rpn.head.'
  conv = lambda name, x: conv2d(x, t[f'{h}{name}.weight'], t[f'{h}{name}.bias'],
                                1, 1)

  def tower(name, x):
    for i in range(g.num_convs):
      x = conv(f'{name}.{3 * i}', x)
      x = _relu(group_norm(x, t[f'{h}{name}.{3 * i + 1}.weight'],
                           t[f'{h}{name}.{3 * i + 1}.bias']))
    return x

  def scale(name):
    return t[f'{h}{name}.scale'][0]

  out = collections.defaultdict(list)
  pyramid = _fpn(t, c3, c4, c5)
  for level, feature in enumerate(pyramid):
    cls, box = tower('cls_tower', feature), tower('bbox_tower', feature)
    xy = _locations(*feature.shape[2:], strides[level])[None]
    out['cls_logits'].append(conv('cls_logits', cls))
    out['box_regression'].append(_relu(scale(f'scales.{level}') *
                                       conv('bbox_pred', box)))
    out['centerness'].append(conv('centerness', box))
    spatial = conv('proposal_spatial_embed_pred', box)
    out['proposal_embedding'].append(np.concatenate([
        spatial + scale('position_scale') * xy / 100.0,
        conv('proposal_other_embed_pred', box)], 1))
    margin = conv('proposal_margin_pred', box / 32)
    if version == 3:
      margin = np.concatenate([margin[:, :2] * scale(f'margin_scales.{level}'),
                               margin[:, 2:]], 1)
    else:  # V2: one margin m, P = exp(-m * sum_d (p_d - q_d)^2).
      margin = np.repeat(margin, g.embed_dim, axis=1)
    out['proposal_margin'].append(np.exp(margin))
  mask = tower('mask_tower', pyramid[0])
  xy = _locations(*mask.shape[2:], strides[0])[None]
  pixel = np.concatenate([
      conv('pixel_spatial_embed_pred', mask) + scale('position_scale') * xy
      / 100.0, conv('pixel_other_embed_pred', mask)], 1)
  out['pixel_embedding'] = upsample_bilinear_2x(pixel)
  return dict(out)
