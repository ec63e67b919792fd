"""Maps a fb.resnet.torch trunk (stem and bottleneck layers) to our `Trunk`.

The tree is read as saved. A bottleneck is

    Sequential{ConcatTable{residual, shortcut}, CAddTable, [BN], ReLU}
    residual = conv1x1 [BN] ReLU conv3x3(stride) [BN] ReLU conv1x1 [BN]
    shortcut = Identity | conv1x1(stride) | Sequential{conv1x1(stride), BN}

(any BN may already be an `inn.ConstAffine`/`nn.SpatialConstDiagonal`, any
conv may sit in a `Sequential{SpatialSymmetricPadding, conv}`). Our block is
relu(affine_out(branch(x) + shortcut(x))) with affines after conv1 and conv2:

  * released resnet-50.t7 (BN after the addition): that BN -> 'affine_out';
  * resnet.lua (BN right after the last conv of each path, BN on the
    projection): each is folded into the conv before it (exact), and
    'affine_out' is the identity.

fb.resnet.torch pads its 3x3/7x7 convs with zeros; DeepMask's createTrunk
switches them to symmetric padding (`updatePadding`). `allow_zero_padding`
accepts the former (ImageNet files), and `TrunkWeights.padding` says which
the file uses, so a Trunk with that padding computes the file's own forward.
"""

import dataclasses

from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.torch_layers import Affine, Chain, Conv, flatten, kind_of
from deepmask_jax.convert.torch_tree import Node
from deepmask_jax.convert.trunk_variables import TrunkVariables

MIN_LAYERS = 3  # DeepMask's trunk stops after layer3 (stride 16).


@dataclasses.dataclass
class TrunkWeights(TrunkVariables):
  """A Torch trunk's variables (TrunkVariables) and what the file tells of it.

  feature_modules maps the 1-based index of a top-level trunk module to the
  feature our Trunk returns after it ('conv1', 'layer1'..): the positions
  SharpMask's `skpos` refers to.
  """
  feature_modules: dict
  num_convs: int
  num_zero_padded: int  # 3x3/7x7 convs that padded with zeros in the file.
  num_symmetric_padded: int  # ... and those that padded symmetrically.

  @property
  def padding(self) -> str:
    """'zero' or 'symmetric': the padding of the file's 3x3/7x7 convs."""
    if self.num_zero_padded and self.num_symmetric_padded:
      raise ConversionError(
          f'the trunk pads {self.num_zero_padded} convs with zeros and '
          f'{self.num_symmetric_padded} symmetrically; our trunk pads all '
          'its convs one way')
    return 'zero' if self.num_zero_padded else 'symmetric'


class _TrunkBuilder:
  """Checks each conv/affine against our trunk and collects the variables."""

  def __init__(self, allow_zero_padding: bool):
    self.allow_zero_padding = allow_zero_padding
    self.params, self.constants = {}, {}
    self.num_convs = self.num_zero_padded = self.num_symmetric_padded = 0

  def conv(self, scope: dict, name: str, conv: Conv, size: int, stride: int,
           in_channels: int) -> None:
    node = conv.node
    if conv.size != size or conv.stride != stride:
      raise node.error(f'a {conv.size}x{conv.size}/{conv.stride} conv where our '
                       f'trunk has {size}x{size}/{stride}')
    if conv.in_channels != in_channels:
      raise node.error(f'takes {conv.in_channels} channels, its input has '
                       f'{in_channels}')
    if conv.padding == 'zero' and not self.allow_zero_padding:
      raise node.error('pads with zeros; a DeepMask trunk pads symmetrically '
                       '(SpatialSymmetricPadding), as our model does')
    scope[name] = {'conv': conv.variables()}
    self.num_convs += 1
    self.num_zero_padded += conv.padding == 'zero'
    self.num_symmetric_padded += conv.padding == 'symmetric'

  @staticmethod
  def affine(scope: dict, name: str, affine, channels: int) -> None:
    """Stores `affine` (identity when None) after a conv with `channels`."""
    affine = affine or Affine.identity(channels)
    if affine.scale.size != channels:
      raise affine.node.error(f'batch norm over {affine.scale.size} channels '
                              f'follows a conv with {channels}')
    scope[name] = affine.constants()


def _stem(builder: _TrunkBuilder, modules: list):
  """conv7x7/2 [BN] ReLU maxpool3x3/2.

  Returns (width, number of top-level modules used, 1-based index of the
  module that ends with the stem's ReLU or None).
  """
  leaves, used, relu_module = [], 0, None
  while used < len(modules) and 'maxpool' not in map(kind_of, leaves):
    module_leaves = flatten(modules[used])
    leaves += module_leaves
    used += 1
    if (relu_module is None and module_leaves and
        kind_of(module_leaves[-1]) == 'threshold'):
      relu_module = used
  chain = Chain(modules[0] if modules else Node(None, 'trunk'), leaves)
  conv = chain.conv()
  builder.conv(builder.params, 'conv1', conv, 7, 2, 3)
  builder.affine(builder.constants, 'affine1', chain.affine(), conv.out_channels)
  chain.threshold()
  pool = chain.take('maxpool')
  geometry = [pool.integer(name, 0) for name in
              ('kW', 'kH', 'dW', 'dH', 'padW', 'padH')]
  if geometry != [3, 3, 2, 2, 1, 1] or pool.raw('ceil_mode', False):
    raise pool.error(f'max pool kW,kH,dW,dH,padW,padH = {geometry}, ceil_mode '
                     f"{pool.raw('ceil_mode', False)}; our trunk has "
                     '3,3,2,2,1,1 rounding down')
  chain.finish()
  return conv.out_channels, used, relu_module


def _block(builder: _TrunkBuilder, node: Node, in_channels: int, stride: int):
  """One bottleneck -> (width, output channels, params, constants)."""
  chain = Chain.of(node)
  paths = chain.take('concat').children()
  convs = [sum(kind_of(leaf) == 'conv' for leaf in flatten(p)) for p in paths]
  if len(paths) != 2 or sorted(convs) not in ([0, 3], [1, 3]):
    raise node.error(f'residual paths with {convs} convs; only bottlenecks '
                     '(3 convs beside an identity or 1-conv shortcut) map')
  residual, shortcut = (paths[0], paths[1]) if convs[0] == 3 else (
      paths[1], paths[0])
  params, constants = {}, {}
  width, out_channels = _residual(builder, Chain.of(residual), params,
                                  constants, in_channels, stride)
  _shortcut(builder, shortcut, params, in_channels, out_channels, stride)
  chain.take('add')
  builder.affine(constants, 'affine_out', chain.affine(), out_channels)
  chain.threshold()
  chain.finish()
  return width, out_channels, params, constants


def _residual(builder, chain: Chain, params, constants, in_channels, stride):
  """conv1x1 [BN] ReLU conv3x3 [BN] ReLU conv1x1 [BN] -> (width, out channels)."""
  conv1 = chain.conv()
  builder.conv(params, 'conv1', conv1, 1, 1, in_channels)
  builder.affine(constants, 'affine1', chain.affine(), conv1.out_channels)
  chain.threshold()
  conv2 = chain.conv()
  builder.conv(params, 'conv2', conv2, 3, stride, conv1.out_channels)
  builder.affine(constants, 'affine2', chain.affine(), conv2.out_channels)
  chain.threshold()
  conv3 = chain.conv()
  after = chain.affine()
  if after is not None:  # resnet.lua: BN right after conv3; fold it (exact).
    conv3 = conv3.folded(after)
  builder.conv(params, 'conv3', conv3, 1, 1, conv2.out_channels)
  chain.finish()
  return conv1.out_channels, conv3.out_channels


def _shortcut(builder, path: Node, params, in_channels, out_channels, stride):
  needs_projection = in_channels != out_channels or stride != 1
  if kind_of(path) == 'identity':
    if needs_projection:
      raise path.error(f'identity shortcut from {in_channels} to '
                       f'{out_channels} channels, stride {stride}')
    return
  if not needs_projection:
    raise path.error("a projection where the shapes agree (shortcut type 'C'); "
                     'our blocks use the identity there')
  chain = Chain.of(path)
  conv = chain.conv()
  after = chain.affine()
  if after is not None:  # resnet.lua: Sequential{conv, BN}; fold the BN.
    conv = conv.folded(after)
  chain.finish()
  builder.conv(params, 'projection', conv, 1, stride, in_channels)
  if conv.out_channels != out_channels:
    raise conv.node.error(f'projects to {conv.out_channels} channels, the '
                          f'residual path gives {out_channels}')


def _is_layer(node: Node) -> bool:
  """A Sequential whose children are residual blocks."""
  if node.typename != 'nn.Sequential' or not node.children():
    return False
  return all(kind_of(block) == 'sequential' and block.children() and
             kind_of(block.children()[0]) == 'concat'
             for block in node.children())


def map_trunk(modules: list, allow_zero_padding: bool, max_layers: int = 3):
  """Maps the stem and the first three (up to `max_layers`) layers of a trunk.

  Args:
    modules: the top-level trunk modules (Nodes), as in the file.
    allow_zero_padding: accept zero-padded 3x3/7x7 convs (ImageNet files).
    max_layers: 3 for DeepMask's trunk; 4 takes layer4 too when the module
      after layer3 is one (an ImageNet ResNet).
  Returns:
    (TrunkWeights, the top-level modules after the last layer mapped).
  """
  builder = _TrunkBuilder(allow_zero_padding)
  channels, used, relu_module = _stem(builder, modules)
  stem_width = channels
  feature_modules = {relu_module: 'conv1'} if relu_module else {}
  widths, depths, expansions = [], [], set()
  for layer in range(max_layers):
    index = used + layer
    has_layer = index < len(modules) and _is_layer(modules[index])
    if layer >= MIN_LAYERS and not has_layer:
      break
    if not has_layer:
      where = modules[min(index, len(modules) - 1)]
      raise where.error(f'expected layer{layer + 1} (a Sequential of residual '
                        'blocks) here')
    layer_widths = []
    for b, block in enumerate(modules[index].children()):
      stride = 2 if layer > 0 and b == 0 else 1
      width, channels, params, constants = _block(builder, block, channels,
                                                  stride)
      builder.params[f'layer{layer + 1}_{b}'] = params
      builder.constants[f'layer{layer + 1}_{b}'] = constants
      layer_widths.append(width)
      expansions.add(channels / width)
    if len(set(layer_widths)) != 1:
      raise modules[index].error(f'blocks of different widths {layer_widths}')
    widths.append(layer_widths[0])
    depths.append(len(layer_widths))
    feature_modules[index + 1] = f'layer{layer + 1}'
  expansion = expansions.pop()
  if expansions or expansion != int(expansion):
    raise ConversionError(f'trunk blocks expand their width by different or '
                          f'fractional factors {sorted(expansions | {expansion})}')
  weights = TrunkWeights(builder.params, builder.constants, stem_width,
                         tuple(widths), tuple(depths), int(expansion),
                         feature_modules, builder.num_convs,
                         builder.num_zero_padded, builder.num_symmetric_padded)
  return weights, modules[used + len(widths):]
