"""Torch leaf modules read into our layouts, and a cursor over a module chain.

Conv weights (nOut, nIn, kH, kW) become HWIO kernels; legacy 2-D weights
(nOut, nIn*kH*kW) are reshaped first. Batch norm (any of its Torch forms) and
the folded `inn.ConstAffine` / `nn.SpatialConstDiagonal` become an `Affine`
y = x * scale + bias. A conv's padding is recorded as 'symmetric' (wrapped
after a `SpatialSymmetricPadding`), 'zero' (its own padW/padH) or 'none'.
"""

import dataclasses
import math

import numpy as np

from deepmask_jax.convert.torch_tree import Node

# Torch type -> the kind the mappers match on (cudnn.* and nn.* alike).
KINDS = {
    'nn.Sequential': 'sequential',
    'nn.ConcatTable': 'concat',
    'nn.ParallelTable': 'parallel',
    'nn.CAddTable': 'add',
    'nn.Identity': 'identity',
    'nn.SpatialConvolution': 'conv',
    'nn.SpatialConvolutionMM': 'conv',
    'cudnn.SpatialConvolution': 'conv',
    'nn.SpatialBatchNormalization': 'affine',
    'cudnn.SpatialBatchNormalization': 'affine',
    'inn.ConstAffine': 'affine',
    'nn.SpatialConstDiagonal': 'affine',
    'nn.ReLU': 'threshold',
    'cudnn.ReLU': 'threshold',
    'nn.Threshold': 'threshold',
    'nn.SpatialMaxPooling': 'maxpool',
    'cudnn.SpatialMaxPooling': 'maxpool',
    'nn.SpatialSymmetricPadding': 'pad',
    'nn.SpatialZeroPadding': 'crop',
    'nn.View': 'view',
    'nn.Linear': 'linear',
    'nn.Dropout': 'dropout',
    'nn.Copy': 'copy',
    'nn.SpatialReSamplingEx': 'resample',
    'nn.SpatialUpSamplingNearest': 'upsample',
}


def kind_of(node: Node) -> str:
  kind = KINDS.get(node.typename)
  if kind is None:
    raise node.error('module type not supported by the converter')
  return kind


def flatten(node: Node) -> list:
  """The leaves of a module in forward order: nested Sequentials are opened."""
  if kind_of(node) != 'sequential':
    return [node]
  return [leaf for child in node.children() for leaf in flatten(child)]


@dataclasses.dataclass
class Affine:
  """y = x * scale + bias per channel (float64 until written)."""
  scale: np.ndarray
  bias: np.ndarray
  node: Node = None  # Where it came from (None for the identity).

  @classmethod
  def identity(cls, channels: int) -> 'Affine':
    return cls(np.ones(channels), np.zeros(channels))

  def constants(self) -> dict:
    return {'scale': self.scale.astype(np.float32),
            'bias': self.bias.astype(np.float32)}


@dataclasses.dataclass
class Conv:
  """A square conv: kernel HWIO, bias [O], stride, padding kind."""
  kernel: np.ndarray
  bias: np.ndarray
  stride: int
  padding: str  # 'symmetric', 'zero' or 'none'.
  node: Node

  @property
  def size(self) -> int:
    return self.kernel.shape[0]

  @property
  def in_channels(self) -> int:
    return self.kernel.shape[2]

  @property
  def out_channels(self) -> int:
    return self.kernel.shape[3]

  def folded(self, affine: Affine) -> 'Conv':
    """This conv followed by `affine`, as one conv (exact)."""
    if affine.scale.size != self.out_channels:
      raise affine.node.error(f'batch norm over {affine.scale.size} channels '
                              f'follows a conv with {self.out_channels}')
    return dataclasses.replace(self, kernel=self.kernel * affine.scale,
                               bias=self.bias * affine.scale + affine.bias)

  def variables(self) -> dict:
    return {'kernel': self.kernel.astype(np.float32),
            'bias': self.bias.astype(np.float32)}


def read_affine(node: Node) -> Affine:
  """Batch norm (eval statistics) or a folded ConstAffine/ConstDiagonal."""
  if node.typename.endswith('BatchNormalization'):
    mean = node.tensor('running_mean').reshape(-1)
    eps = node.number('eps', 1e-5)
    if node.has('running_var'):
      var = node.tensor('running_var').reshape(-1)
    elif node.has('running_std'):  # nn before BN version 2: 1/sqrt(var+eps).
      var = node.tensor('running_std').reshape(-1) ** -2 - eps
    else:
      raise node.error('has neither running_var nor running_std')
    gamma = node.tensor('weight', required=False)
    beta = node.tensor('bias', required=False)
    gamma = np.ones_like(mean) if gamma is None else gamma.reshape(-1)
    beta = np.zeros_like(mean) if beta is None else beta.reshape(-1)
    _same_sizes(node, running_mean=mean, running_var=var, weight=gamma,
                bias=beta)
    if np.any(var + eps <= 0):
      raise node.error('running variance + eps is not positive')
    scale = gamma / np.sqrt(var + eps)
    return Affine(scale, beta - mean * scale, node)
  scale, bias = node.tensor('a').reshape(-1), node.tensor('b').reshape(-1)
  _same_sizes(node, a=scale, b=bias)
  return Affine(scale, bias, node)


def _same_sizes(node: Node, **tensors) -> None:
  sizes = {name: t.size for name, t in tensors.items()}
  if len(set(sizes.values())) != 1:
    raise node.error(f'tensor sizes disagree: {sizes}')


def read_conv(node: Node, pad: Node = None) -> Conv:
  """A SpatialConvolution (optionally after a SpatialSymmetricPadding)."""
  n_in, n_out = node.integer('nInputPlane'), node.integer('nOutputPlane')
  kw, kh = node.integer('kW'), node.integer('kH')
  dw, dh = node.integer('dW', 1), node.integer('dH', 1)
  legacy_pad = node.integer('padding', 0)  # nn before padW/padH.
  padw, padh = node.integer('padW', legacy_pad), node.integer('padH', legacy_pad)
  if node.integer('groups', 1) != 1:
    raise node.error('grouped convolutions are not supported')
  if kw != kh or dw != dh or padw != padh:
    raise node.error(f'only square convs are supported: kernel {kw}x{kh}, '
                     f'stride {dw}x{dh}, padding {padw}x{padh}')
  weight = node.tensor('weight')
  expected = (n_out, n_in, kh, kw)
  if weight.ndim == 2 and weight.shape == (n_out, n_in * kh * kw):
    weight = weight.reshape(expected)  # Legacy SpatialConvolution(MM) layout.
  if weight.shape != expected:
    raise node.error(f'weight has shape {list(weight.shape)}, nInputPlane/'
                     f'nOutputPlane/kH/kW say {list(expected)}')
  bias = node.tensor('bias', required=False)
  if bias is None:
    bias = np.zeros(n_out)
  elif bias.shape != (n_out,):
    raise node.error(f'bias has shape {list(bias.shape)}, expected [{n_out}]')
  return Conv(weight.transpose(2, 3, 1, 0), bias, dw,
              _padding_kind(node, kw, padw, pad), node)


def _padding_kind(node: Node, kernel: int, own_pad: int, pad: Node) -> str:
  same = (kernel - 1) // 2
  if pad is not None:
    sides = [pad.integer(f'pad_{side}') for side in 'lrtb']
    if own_pad != 0 or sides != [same] * 4:
      raise pad.error(f'symmetric padding {sides} (conv padW {own_pad}) does '
                      f'not keep the size of the {kernel}x{kernel} conv '
                      f'{node.path}')
    return 'symmetric' if same else 'none'
  if own_pad == 0 and same == 0:
    return 'none'
  if own_pad != same:
    raise node.error(f'padding {own_pad} does not keep the size of a '
                     f'{kernel}x{kernel} conv')
  return 'zero'


def read_linear(node: Node):
  """Linear weight (out, in), bias (out) -> (weight, bias) float64."""
  weight, bias = node.tensor('weight'), node.tensor('bias')
  if weight.ndim != 2 or bias.shape != (weight.shape[0],):
    raise node.error(f'weight {list(weight.shape)} and bias '
                     f'{list(bias.shape)} do not make a Linear')
  return weight, bias


def crop_pixels(node: Node) -> int:
  """SpatialZeroPadding with equal negative pads: pixels cropped per side."""
  sides = [node.integer(f'pad_{side}') for side in 'lrtb']
  if len(set(sides)) != 1 or sides[0] > 0:
    raise node.error(f'only an equal crop on all sides is supported, pads {sides}')
  return -sides[0]


def square_side(node: Node, elements: int, what: str) -> int:
  side = math.isqrt(elements)
  if side * side != elements:
    raise node.error(f'{what} of {elements} is not a square')
  return side


class Chain:
  """A cursor over the leaves of one module chain, for matching a pattern."""

  def __init__(self, owner: Node, leaves: list):
    self.owner = owner
    self.leaves = list(leaves)
    self.position = 0

  @classmethod
  def of(cls, node: Node) -> 'Chain':
    return cls(node, flatten(node))

  def peek(self):
    """The next leaf's kind, or None at the end."""
    if self.position == len(self.leaves):
      return None
    return kind_of(self.leaves[self.position])

  def take(self, kind: str) -> Node:
    if self.peek() != kind:
      if self.peek() is None:
        raise self.owner.error(f'ends early: expected a {kind} module after '
                               f'{len(self.leaves)} modules')
      raise self.leaves[self.position].error(f'expected a {kind} module here')
    self.position += 1
    return self.leaves[self.position - 1]

  def optional(self, kind: str):
    return self.take(kind) if self.peek() == kind else None

  def conv(self) -> Conv:
    pad = self.optional('pad')
    return read_conv(self.take('conv'), pad)

  def affine(self):
    """The next module's Affine, or None if the next is not a BN/affine."""
    node = self.optional('affine')
    return None if node is None else read_affine(node)

  def threshold(self, value: float = 0.0) -> Node:
    """A ReLU (`value` 0) or Threshold(0, value)."""
    node = self.take('threshold')
    threshold, val = node.number('threshold', 0), node.number('val', 0)
    if threshold != 0 or not math.isclose(val, value, rel_tol=1e-5,
                                          abs_tol=1e-12):
      raise node.error(f'Threshold({threshold}, {val}) where '
                       f'Threshold(0, {value}) is expected')
    return node

  def finish(self) -> None:
    if self.peek() is not None:
      raise self.leaves[self.position].error(
          'unexpected module: the converter does not know where it goes')
