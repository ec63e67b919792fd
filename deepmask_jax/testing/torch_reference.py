"""An independent numpy interpreter of the Torch modules, in Torch semantics.

It runs the test-side module trees (`t7_writer` objects, before any file is
written) the way Lua Torch would in evaluate mode: NCHW arrays, OIHW weights,
convs padding with zeros by padW/padH, `SpatialSymmetricPadding` as its Lua
loop writes it, `SpatialZeroPadding` cropping with negative pads, max pooling
that ignores its padding, BN with running statistics, View/Linear on (C,H,W)
row-major, nnx `SpatialReSamplingEx` bilinear as its C code computes it. It
shares no code with the converter or the Flax models. float64 throughout.
"""

import copy

import numpy as np

from deepmask_jax.testing.t7_writer import Storage, Tensor, TorchObject


def _array(value) -> np.ndarray:
  if isinstance(value, Tensor):
    return value.array().astype(np.float64)
  if isinstance(value, Storage):
    return value.data
  return np.asarray(value, np.float64)


def _conv(m: TorchObject, x):
  f = m.fields
  n_in, n_out, kh, kw = f['nInputPlane'], f['nOutputPlane'], f['kH'], f['kW']
  weight = _array(f['weight']).reshape(n_out, n_in, kh, kw)
  pad_h = f.get('padH', f.get('padding', 0))
  pad_w = f.get('padW', f.get('padding', 0))
  x = np.pad(x, ((0, 0), (0, 0), (pad_h, pad_h), (pad_w, pad_w)))
  windows = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))
  windows = windows[:, :, ::f['dH'], ::f['dW']]
  out = np.einsum('bchwij,ocij->bohw', windows, weight, optimize=True)
  if 'bias' in f:
    out = out + _array(f['bias'])[None, :, None, None]
  return out


def _symmetric_padding(m: TorchObject, x):
  """The Lua updateOutput: copy (or crop), then mirror row/column by row."""
  f = m.fields
  pad_l, pad_r, pad_t, pad_b = f['pad_l'], f['pad_r'], f['pad_t'], f['pad_b']
  assert min(pad_l, pad_r, pad_t, pad_b) >= 0, 'negative symmetric padding'
  b, c, h, w = x.shape
  out = np.zeros((b, c, h + pad_t + pad_b, w + pad_l + pad_r))
  out[:, :, pad_t:pad_t + h, pad_l:pad_l + w] = x
  height, width = out.shape[2], out.shape[3]
  for i in range(1, pad_t + 1):
    out[:, :, pad_t - i] = out[:, :, i + pad_t - 1]
  for i in range(1, pad_b + 1):
    out[:, :, height - pad_b + i - 1] = out[:, :, height - pad_b - i]
  for i in range(1, pad_l + 1):
    out[:, :, :, pad_l - i] = out[:, :, :, i + pad_l - 1]
  for i in range(1, pad_r + 1):
    out[:, :, :, width - pad_r + i - 1] = out[:, :, :, width - pad_r - i]
  return out


def _zero_padding(m: TorchObject, x):
  f = m.fields
  h, w = x.shape[2], x.shape[3]
  top, bottom, left, right = f['pad_t'], f['pad_b'], f['pad_l'], f['pad_r']
  x = x[:, :, max(-top, 0):h - max(-bottom, 0), max(-left, 0):w - max(-right, 0)]
  return np.pad(x, ((0, 0), (0, 0), (max(top, 0), max(bottom, 0)),
                    (max(left, 0), max(right, 0))))


def _max_pool(m: TorchObject, x):
  f = m.fields
  assert not f.get('ceil_mode', False)
  x = np.pad(x, ((0, 0), (0, 0), (f['padH'],) * 2, (f['padW'],) * 2),
             constant_values=-np.inf)
  windows = np.lib.stride_tricks.sliding_window_view(x, (f['kH'], f['kW']),
                                                     axis=(2, 3))
  return windows[:, :, ::f['dH'], ::f['dW']].max(axis=(4, 5))


def _batch_norm(m: TorchObject, x):
  f = m.fields
  mean = _array(f['running_mean'])
  if 'running_var' in f:
    invstd = 1 / np.sqrt(_array(f['running_var']) + f['eps'])
  else:
    invstd = _array(f['running_std'])
  y = (x - mean[:, None, None]) * invstd[:, None, None]
  if 'weight' in f:
    y = y * _array(f['weight'])[:, None, None] + _array(f['bias'])[:, None, None]
  return y


def _const_affine(m: TorchObject, x):
  a = _array(m.fields['a']).reshape(-1)
  b = _array(m.fields['b']).reshape(-1)
  return x * a[:, None, None] + b[:, None, None]


def _view(m: TorchObject, x):
  size = tuple(int(s) for s in _array(m.fields['size']))
  if int(np.prod(size)) == x.size:
    return x.reshape(size)
  return x.reshape((x.shape[0],) + size)  # Batch mode (View(2048)).


def _linear(m: TorchObject, x):
  return x @ _array(m.fields['weight']).T + _array(m.fields['bias'])


def _threshold(m: TorchObject, x):
  threshold = m.fields.get('threshold', 0)
  return np.where(x > threshold, x, m.fields.get('val', 0))


def _resample_bilinear(m: TorchObject, x):
  """nnx SpatialReSamplingEx mode 'bilinear' on the last two dims."""
  f = m.fields
  assert f['mode'] == 'bilinear'
  ih, iw = x.shape[-2], x.shape[-1]
  oh, ow = f['oheight'], f['owidth']
  hratio, wratio = (ih - 1) / (oh - 1), (iw - 1) / (ow - 1)
  out = np.zeros(x.shape[:-2] + (oh, ow))
  for y in range(oh):
    for x_out in range(ow):
      iy, ix = hratio * y, wratio * x_out
      iy0, ix0 = int(np.floor(iy)), int(np.floor(ix))
      iy1, ix1 = min(iy0 + 1, ih - 1), min(ix0 + 1, iw - 1)
      dy, dx = iy - iy0, ix - ix0
      out[..., y, x_out] = (x[..., iy0, ix0] * (1 - dx) * (1 - dy) +
                            x[..., iy0, ix1] * dx * (1 - dy) +
                            x[..., iy1, ix0] * (1 - dx) * dy +
                            x[..., iy1, ix1] * dx * dy)
  return out


def _upsample_nearest(m: TorchObject, x):
  scale = m.fields['scale_factor']
  return x.repeat(scale, axis=2).repeat(scale, axis=3)


_LEAVES = {
    'conv': _conv, 'sympad': _symmetric_padding, 'zeropad': _zero_padding,
    'maxpool': _max_pool, 'bn': _batch_norm, 'affine': _const_affine,
    'view': _view, 'linear': _linear, 'threshold': _threshold,
    'resample': _resample_bilinear, 'upsample': _upsample_nearest,
    'identity': lambda m, x: x,
}
_TYPES = {
    'nn.SpatialConvolution': 'conv', 'cudnn.SpatialConvolution': 'conv',
    'nn.SpatialConvolutionMM': 'conv', 'nn.SpatialSymmetricPadding': 'sympad',
    'nn.SpatialZeroPadding': 'zeropad', 'nn.SpatialMaxPooling': 'maxpool',
    'nn.SpatialBatchNormalization': 'bn', 'inn.ConstAffine': 'affine',
    'nn.SpatialConstDiagonal': 'affine', 'nn.View': 'view',
    'nn.Linear': 'linear', 'nn.ReLU': 'threshold', 'cudnn.ReLU': 'threshold',
    'nn.Threshold': 'threshold', 'nn.SpatialReSamplingEx': 'resample',
    'nn.SpatialUpSamplingNearest': 'upsample', 'nn.Identity': 'identity',
    'nn.Dropout': 'identity', 'nn.Copy': 'identity',
}


def forward(m: TorchObject, x):
  """m:forward(x) in evaluate mode; x is an array or a list (tables)."""
  name = m.typename
  if name == 'nn.Sequential':
    for child in m.fields['modules']:
      x = forward(child, x)
    return x
  if name == 'nn.ConcatTable':
    return [forward(child, x) for child in m.fields['modules']]
  if name == 'nn.ParallelTable':
    return [forward(child, xi) for child, xi in zip(m.fields['modules'], x)]
  if name == 'nn.CAddTable':
    return sum(x[1:], x[0])
  return _LEAVES[_TYPES[name]](m, x)


def module_outputs(sequential: TorchObject, x, count: int = None) -> list:
  """Outputs of the first `count` (all) top-level modules (`modules[i].output`)."""
  outputs = []
  for child in sequential.fields['modules'][:count]:
    x = forward(child, x)
    outputs.append(x)
  return outputs


def update_padding(tree: TorchObject) -> TorchObject:
  """DeepMask's `utils.updatePadding` on a copy: every 3x3/7x7 conv directly
  in a Sequential or ConcatTable loses its padW/padH and is wrapped as
  Sequential{SpatialSymmetricPadding(padW, padW, padH, padH), conv}."""
  tree = copy.deepcopy(tree)

  def visit(m):
    if m.typename not in ('nn.Sequential', 'nn.ConcatTable'):
      return
    for i, child in enumerate(m.fields['modules']):
      visit(child)
      f = child.fields
      if _TYPES.get(child.typename) == 'conv' and (f['kW'], f['kH']) in (
          (3, 3), (7, 7)):
        legacy = f.pop('padding', 0)  # As nn's backCompatibility reads it.
        pad_w, pad_h = f.get('padW', legacy), f.get('padH', legacy)
        f['padW'] = f['padH'] = 0
        pad = TorchObject('nn.SpatialSymmetricPadding', dict(
            pad_l=pad_w, pad_r=pad_w, pad_t=pad_h, pad_b=pad_h))
        m.fields['modules'][i] = TorchObject('nn.Sequential',
                                             {'modules': [pad, child]})

  visit(tree)
  return tree


def deepmask_forward(model: TorchObject, images):
  """nn.DeepMask on NCHW patches -> (mask [B, gSz^2], score [B, 1])."""
  embedding = forward(model.fields['trunk'], images)
  return (forward(model.fields['maskBranch'], embedding),
          forward(model.fields['scoreBranch'], embedding))


def sharpmask_forward(model: TorchObject, images):
  """SharpMask:forward -> (mask [B, gSz^2], score [B, 1])."""
  f = model.fields
  trunk_outputs = module_outputs(f['trunk'], images)
  embedding = trunk_outputs[-1]
  current = forward(f['refs'][0], embedding)
  for k in range(1, len(f['refs'])):
    skip = trunk_outputs[f['skpos'][k - 1] - 1]
    current = forward(f['refs'][k], [skip, current])
  return current, forward(f['scoreBranch'], embedding)


def relative_error(ours, reference) -> float:
  """max |ours - reference| / max |reference|: the figure the tests bound."""
  ours, reference = np.asarray(ours, np.float64), np.asarray(reference)
  assert ours.shape == reference.shape, (ours.shape, reference.shape)
  return float(np.max(np.abs(ours - reference)) / np.max(np.abs(reference)))
