"""Torch module trees shaped like the released files, with random weights.

Built from `t7_writer` objects, so they can be written as `.t7` and run by
`torch_reference`. Every weight is drawn at random (asymmetric), so a flipped
kernel, a wrong flatten order or a misplaced crop changes the outputs.

Layouts (`TrunkStyle.layout`):
  'released'   fb.resnet.torch's resnet-50.t7: convs with bias, BN after the
               addition, bare 1x1 projection convs.
  'resnet_lua' models/resnet.lua: BN right after every conv (also the last
               of the residual path), Sequential{conv, BN} projections.
"""

import dataclasses

import numpy as np

from deepmask_jax.testing.t7_writer import Storage, Tensor, TorchObject


@dataclasses.dataclass
class TrunkStyle:
  layout: str = 'released'
  conv_type: str = 'cudnn.SpatialConvolution'
  bias: bool = True
  norm: str = 'bn'  # 'bn', 'bn_running_std', 'const_affine', 'const_diagonal'.
  padding: str = 'zero'  # 'zero' (ImageNet file) or 'symmetric' (DeepMask).
  legacy_weights: bool = False  # Old nn: 2-D weights, `padding` field.
  views: bool = False  # Weights stored as strided views into larger storages.


@dataclasses.dataclass
class Geometry:
  """A tiny DeepMask/SharpMask (full size: 64, (64,128,256), (3,4,6), ...)."""
  stem: int = 8
  widths: tuple = (4, 8, 8)
  depths: tuple = (1, 2, 1)
  expansion: int = 4
  object_window: int = 32  # iSz; fSz = iSz / 16.
  feature_channels: int = 8
  embedding: int = 16
  mask_size: int = 6
  label_size: int = 12
  score_hidden: int = 8
  km: int = 16
  batch: int = 2


def module(typename, **fields):
  return TorchObject(typename, fields)


def sequential(*modules):
  return module('nn.Sequential', modules=list(modules))


def symmetric_padding(pad):
  return module('nn.SpatialSymmetricPadding', pad_l=pad, pad_r=pad, pad_t=pad,
                pad_b=pad)


def crop(pixels):
  return module('nn.SpatialZeroPadding', pad_l=-pixels, pad_r=-pixels,
                pad_t=-pixels, pad_b=-pixels)


def relu():
  return module('cudnn.ReLU', inplace=True)


def view(*size):
  return module('nn.View', size=Storage(np.array(size, np.int64)),
                numElements=int(np.prod(size)))


class Builder:
  """Draws random modules in one trunk style."""

  def __init__(self, seed: int = 0, style: TrunkStyle = TrunkStyle()):
    self.rng = np.random.default_rng(seed)
    self.style = style

  def _tensor(self, array):
    """float32 tensor; with `views`, a transposed view at an offset."""
    array = np.asarray(array, np.float32)
    if not self.style.views:
      return array
    junk = self.rng.normal(size=3).astype(np.float32)
    storage = np.concatenate([junk, array.ravel(order='F')])
    strides = np.cumprod((1,) + array.shape[:-1]).tolist()
    return Tensor(storage, array.shape, tuple(strides), offset=3)

  def conv(self, n_in, n_out, k, stride=1, pad=0, bias=None):
    """A conv (wrapped in SymPad when the style pads symmetrically)."""
    weight = self.rng.normal(0, np.sqrt(2.0 / (k * k * n_in)), (n_out, n_in, k, k))
    fields = dict(nInputPlane=n_in, nOutputPlane=n_out, kW=k, kH=k, dW=stride,
                  dH=stride)
    symmetric = self.style.padding == 'symmetric' and pad > 0
    own_pad = 0 if symmetric else pad
    typename = self.style.conv_type
    if self.style.legacy_weights:  # Old nn: 2-D weight, one `padding` field.
      weight = weight.reshape(n_out, -1)
      fields['padding'] = own_pad
    else:
      fields.update(padW=own_pad, padH=own_pad)
    fields['weight'] = self._tensor(weight)
    if self.style.bias if bias is None else bias:
      fields['bias'] = self._tensor(self.rng.normal(0, 0.1, n_out))
    conv = module(typename, **fields)
    return sequential(symmetric_padding(pad), conv) if symmetric else conv

  def norm(self, channels):
    """A BN (eval statistics) or its folded constant form."""
    gamma = self.rng.uniform(0.5, 1.5, channels)
    beta = self.rng.normal(0, 0.2, channels)
    mean = self.rng.normal(0, 0.2, channels)
    var = self.rng.uniform(0.5, 2.0, channels)
    kind = self.style.norm
    if kind == 'bn':
      return module('nn.SpatialBatchNormalization', weight=self._tensor(gamma),
                    bias=self._tensor(beta), running_mean=self._tensor(mean),
                    running_var=self._tensor(var), eps=1e-5, affine=True,
                    momentum=0.1)
    if kind == 'bn_running_std':  # nn before BN version 2.
      bn = module('nn.SpatialBatchNormalization', weight=self._tensor(gamma),
                  bias=self._tensor(beta), running_mean=self._tensor(mean),
                  running_std=self._tensor(1 / np.sqrt(var + 1e-5)), eps=1e-5,
                  affine=True)
      bn.version = 1
      return bn
    scale = gamma / np.sqrt(var + 1e-5)
    shift = beta - mean * scale
    if kind == 'const_affine':
      return module('inn.ConstAffine', a=self._tensor(scale),
                    b=self._tensor(shift), inplace=True)
    # nn.SpatialConstDiagonal of the first deepmask commit: (1, C, 1, 1), no eps.
    scale = gamma / np.sqrt(var)
    return module('nn.SpatialConstDiagonal',
                  a=self._tensor(scale.reshape(1, -1, 1, 1)),
                  b=self._tensor((beta - mean * scale).reshape(1, -1, 1, 1)))

  def linear(self, n_in, n_out):
    return module('nn.Linear',
                  weight=self._tensor(self.rng.normal(0, 1 / np.sqrt(n_in),
                                                      (n_out, n_in))),
                  bias=self._tensor(self.rng.normal(0, 0.1, n_out)))

  def bottleneck(self, n_in, width, stride, expansion):
    out = width * expansion
    lua = self.style.layout == 'resnet_lua'
    path = [self.conv(n_in, width, 1), self.norm(width), relu(),
            self.conv(width, width, 3, stride, 1), self.norm(width), relu(),
            self.conv(width, out, 1)]
    if lua:
      path.append(self.norm(out))
    if n_in == out and stride == 1:
      shortcut = module('nn.Identity')
    elif lua:
      shortcut = sequential(self.conv(n_in, out, 1, stride), self.norm(out))
    else:
      shortcut = self.conv(n_in, out, 1, stride)
    after_add = [] if lua else [self.norm(out)]
    return sequential(module('nn.ConcatTable',
                             modules=[sequential(*path), shortcut]),
                      module('nn.CAddTable', inplace=True), *after_add, relu())

  def trunk_modules(self, g: Geometry, layer4=None):
    """Stem, layer1..3 and (if given as (width, depth)) layer4: a module list."""
    modules = [self.conv(3, g.stem, 7, 2, 3), self.norm(g.stem), relu(),
               module('nn.SpatialMaxPooling', kW=3, kH=3, dW=2, dH=2, padW=1,
                      padH=1, ceil_mode=False)]
    channels = g.stem
    layers = list(zip(g.widths, g.depths)) + ([layer4] if layer4 else [])
    for layer, (width, depth) in enumerate(layers):
      blocks = []
      for b in range(depth):
        blocks.append(self.bottleneck(channels, width,
                                      2 if layer and not b else 1, g.expansion))
        channels = width * g.expansion
      modules.append(sequential(*blocks))
    return modules


def resnet_file(g: Geometry, style: TrunkStyle, seed: int = 0,
                layer4=(8, 1), classes: int = 10):
  """An ImageNet ResNet Sequential: stem, layer1..4, avgpool, View, Linear.

  ResNet-50: Geometry(64, (64, 128, 256), (3, 4, 6)), layer4=(512, 3),
  classes=1000.
  """
  builder = Builder(seed, style)
  modules = builder.trunk_modules(g, layer4)
  channels = layer4[0] * g.expansion
  modules += [module('cudnn.SpatialAveragePooling', kW=7, kH=7, dW=1, dH=1),
              view(channels), builder.linear(channels, classes)]
  return sequential(*modules)


def deepmask_parts(g: Geometry, norm: str = 'const_affine', seed: int = 0):
  """(trunk, maskBranch, scoreBranch) of a trained DeepMask."""
  builder = Builder(seed, TrunkStyle(padding='symmetric', norm=norm))
  fsz = g.object_window // 16
  trunk_channels = g.widths[-1] * g.expansion
  trunk = sequential(
      *builder.trunk_modules(g), crop(1),
      builder.conv(trunk_channels, g.feature_channels, 1), relu(),
      view(g.batch, g.feature_channels * fsz * fsz),
      builder.linear(g.feature_channels * fsz * fsz, g.embedding))
  mask = sequential(sequential(builder.linear(g.embedding, g.mask_size ** 2)))
  if g.label_size > g.mask_size:
    mask.fields['modules'].append(sequential(
        module('nn.Copy', intype='torch.CudaTensor', outtype='torch.FloatTensor'),
        view(g.batch, g.mask_size, g.mask_size),
        module('nn.SpatialReSamplingEx', owidth=g.label_size,
               oheight=g.label_size, mode='bilinear', mode_c=2, yDim=2, xDim=3),
        view(g.batch, g.label_size ** 2),
        module('nn.Copy', intype='torch.FloatTensor', outtype='torch.CudaTensor')))
  score = sequential(
      module('nn.Dropout', p=0.5, v2=True, train=False),
      builder.linear(g.embedding, g.score_hidden),
      module('nn.Threshold', threshold=0, val=1e-6, inplace=False),
      module('nn.Dropout', p=0.5, v2=True, train=False),
      builder.linear(g.score_hidden, 1))
  return trunk, mask, score


def train_config(g: Geometry, **overrides):
  """The train.lua options saved beside the model."""
  config = dict(iSz=g.object_window, oSz=g.mask_size, gSz=g.label_size,
                batch=g.batch, shift=16, scale=0.25, hfreq=0.5, maxload=4000,
                momentum=0.9, wd=5e-4, lr=0, km=g.km, ks=g.km)
  config.update(overrides)
  return config


def deepmask_file(g: Geometry, norm: str = 'const_affine', seed: int = 0):
  """{model = nn.DeepMask, config = options}, as TrainerDeepMask saves it."""
  trunk, mask, score = deepmask_parts(g, norm, seed)
  model = module('nn.DeepMask', trunk=trunk, maskBranch=mask,
                 scoreBranch=score, fSz=g.object_window // 16)
  return {'model': model, 'config': train_config(g)}


def _three_by_three(builder, n_in, n_out):
  return [symmetric_padding(1), builder.conv(n_in, n_out, 3)]


def sharpmask_file(g: Geometry, seed: int = 0):
  """{model = nn.SharpMask, config}: DeepMask parts plus refs/neths/netvs."""
  trunk, mask, score = deepmask_parts(g, seed=seed)
  builder = Builder(seed + 1, TrunkStyle(padding='zero'))
  fsz = g.object_window // 16
  skip_inputs = [g.widths[2] * g.expansion, g.widths[1] * g.expansion,
                 g.widths[0] * g.expansion, g.stem]
  hidden_widths, crops = (64, 64, 64, 32), (0, 2, 4, 8)
  netvs = {0: sequential(builder.linear(g.embedding, fsz * fsz * g.km),
                         view(g.batch, g.km, fsz, fsz))}
  neths, refs = [], {0: netvs[0]}
  for i in range(4):
    n = g.km // 2 ** i
    head = [crop(crops[i])] if crops[i] else []
    neths.append(sequential(
        *head, *_three_by_three(builder, skip_inputs[i], hidden_widths[i]),
        relu(), *_three_by_three(builder, hidden_widths[i], n), relu(),
        *_three_by_three(builder, n, n // 2)))
    netvs[i + 1] = sequential(*_three_by_three(builder, n, n), relu(),
                              *_three_by_three(builder, n, n // 2))
    refs[i + 1] = sequential(
        module('nn.ParallelTable', modules=[neths[i], netvs[i + 1]]),
        module('nn.CAddTable', inplace=False), relu(),
        module('nn.SpatialUpSamplingNearest', scale_factor=2))
  refs[4].fields['modules'] += [*_three_by_three(builder, g.km // 16, 1),
                                view(g.batch, g.object_window ** 2)]
  model = module('nn.SharpMask', km=g.km, ks=g.km, skpos=[8, 6, 5, 3],
                 inps={}, trunk=trunk, scoreBranch=score, maskBranchDM=mask,
                 fSz=fsz, neths=neths, netvs=netvs, refs=refs)
  return {'model': model,
          'config': train_config(g, gSz=g.object_window, hfreq=0, dm='dm/')}
