"""Maps an `nn.DeepMask` (trunk, maskBranch, scoreBranch, fSz) to our DeepMask.

The trained trunk is the ResNet stem and layer1..3 (BN folded to constant
affines, symmetric padding), then

    SpatialZeroPadding(-1) -> conv1x1 1024->128 -> ReLU -> View -> Linear(12800, 512)

The Linear flattens the cropped map in (C, H, W) row-major order; our `embed`
is the same map as a VALID conv with HWIO kernel [fSz, fSz, 128, 512], so
kernel[h, w, c, o] = weight[o, c*fSz*fSz + h*fSz + w]. The heads:
maskBranch = Linear(512, oSz^2) [-> bilinear upsampling to gSz],
scoreBranch = Dropout, Linear(512, 1024), Threshold(0, 1e-6), Dropout,
Linear(1024, 1). Dense kernels are Torch weights transposed (in, out).
"""

import dataclasses

from deepmask_jax.convert import resnet
from deepmask_jax.convert.torch_layers import (Chain, crop_pixels, flatten,
                                               read_linear, square_side)
from deepmask_jax.convert.torch_tree import Node

THRESHOLD_VALUE = 1e-6  # models.layers.threshold_relu.


@dataclasses.dataclass
class DeepMaskWeights:
  """Our DeepMask variables (trunk included) and the sizes they imply.

  crop_module is the 1-based trunk module index of the 1-pixel crop, whose
  output is SharpMask's first skip feature (cropped layer3).
  """
  params: dict
  constants: dict
  trunk: resnet.TrunkWeights
  feature_channels: int
  embedding: int
  feature_size: int
  mask_size: int
  label_size: int
  score_hidden: int
  dropout: float
  crop_module: int


def _dense(weight, bias) -> dict:
  return {'kernel': weight.T.astype('float32'), 'bias': bias.astype('float32')}


def _trunk_tail(trunk: Node, rest: list, trunk_channels: int, model: Node):
  """crop -> conv1x1 -> ReLU -> View -> Linear -> (reduce, embed, fSz, crop index)."""
  if not rest:
    raise trunk.error('ends after layer3; a DeepMask trunk continues with '
                      'the crop, a 1x1 conv and the Linear to 512')
  chain = Chain(trunk, [leaf for node in rest for leaf in flatten(node)])
  crop = chain.take('crop')
  if crop.obj is not rest[0].obj:
    raise crop.error('the crop must be a trunk module of its own')
  if crop_pixels(crop) != 1:
    raise crop.error(f'crops {crop_pixels(crop)} pixels; DeepMask crops 1')
  reduce = chain.conv()
  if reduce.size != 1 or reduce.stride != 1:
    raise reduce.node.error(f'a {reduce.size}x{reduce.size}/{reduce.stride} '
                            'conv where DeepMask has 1x1/1')
  if reduce.in_channels != trunk_channels:
    raise reduce.node.error(f'takes {reduce.in_channels} channels, layer3 '
                            f'gives {trunk_channels}')
  chain.threshold()
  view = chain.take('view')
  linear = chain.take('linear')
  chain.finish()
  weight, bias = read_linear(linear)
  channels = reduce.out_channels
  if weight.shape[1] % channels:
    raise linear.error(f'{weight.shape[1]} inputs is not a multiple of the '
                       f'{channels} channels before it')
  fsz = square_side(linear, weight.shape[1] // channels, 'a flattened map')
  if model.has('fSz') and model.integer('fSz') != fsz:
    raise linear.error(f'flattens a {fsz}x{fsz} map, the model says fSz = '
                       f"{model.integer('fSz')}")
  if view.numbers('size')[-1] != weight.shape[1]:
    raise view.error(f"View{list(view.numbers('size'))} does not flatten to "
                     f'the {weight.shape[1]} inputs of {linear.path}')
  embed = weight.reshape(weight.shape[0], channels, fsz, fsz).transpose(2, 3, 1, 0)
  embed = {'kernel': embed.astype('float32'), 'bias': bias.astype('float32')}
  crop_module = int(crop.path.rsplit('[', 1)[1].rstrip(']'))
  return reduce.variables(), embed, fsz, crop_module


def _mask_branch(branch: Node, embedding: int):
  """Linear(512, oSz^2) [Copy, View, SpatialReSamplingEx, View, Copy]."""
  chain = Chain.of(branch)
  linear = chain.take('linear')
  weight, bias = read_linear(linear)
  if weight.shape[1] != embedding:
    raise linear.error(f'takes {weight.shape[1]} inputs, the embedding has '
                       f'{embedding}')
  mask_size = square_side(linear, weight.shape[0], 'a mask')
  label_size = mask_size
  if chain.peek() is not None:
    chain.optional('copy')
    chain.take('view')
    resample = chain.take('resample')
    label_size = resample.integer('owidth')
    if resample.integer('oheight') != label_size or resample.string(
        'mode', 'simple') != 'bilinear':
      raise resample.error('only square bilinear upsampling maps')
    chain.take('view')
    chain.optional('copy')
  chain.finish()
  return _dense(weight, bias), mask_size, label_size


def _score_branch(branch: Node, embedding: int):
  """[Dropout] Linear(512, 1024) Threshold(0, 1e-6) [Dropout] Linear(1024, 1)."""
  chain = Chain.of(branch)
  dropouts = [chain.optional('dropout')]
  hidden = chain.take('linear')
  chain.threshold(THRESHOLD_VALUE)
  dropouts.append(chain.optional('dropout'))
  out = chain.take('linear')
  chain.finish()
  hidden_weight, hidden_bias = read_linear(hidden)
  out_weight, out_bias = read_linear(out)
  if hidden_weight.shape[1] != embedding:
    raise hidden.error(f'takes {hidden_weight.shape[1]} inputs, the embedding '
                       f'has {embedding}')
  if out_weight.shape != (1, hidden_weight.shape[0]):
    raise out.error(f'weight {list(out_weight.shape)}, expected '
                    f'[1, {hidden_weight.shape[0]}]')
  rates = {node.number('p', 0.5) for node in dropouts if node is not None}
  if len(rates) > 1:
    raise branch.error(f'dropouts with different rates {sorted(rates)}')
  params = {'score_hidden_layer': _dense(hidden_weight, hidden_bias),
            'score_out': _dense(out_weight, out_bias)}
  return params, hidden_weight.shape[0], rates.pop() if rates else 0.0


def map_deepmask(model: Node, mask_branch: str = 'maskBranch') -> DeepMaskWeights:
  """Maps DeepMask's trunk and heads (SharpMask's bottom-up part as well).

  Args:
    model: the `nn.DeepMask` (or `nn.SharpMask`) object.
    mask_branch: the field holding the mask head ('maskBranchDM' in SharpMask).
  """
  trunk_node = model.child('trunk')
  trunk, rest = resnet.map_trunk(trunk_node.children(), allow_zero_padding=False)
  trunk_channels = trunk.widths[-1] * trunk.expansion
  reduce, embed, fsz, crop_module = _trunk_tail(trunk_node, rest,
                                                trunk_channels, model)
  embedding = embed['kernel'].shape[-1]
  mask_head, mask_size, label_size = _mask_branch(model.child(mask_branch),
                                                  embedding)
  score, score_hidden, dropout = _score_branch(model.child('scoreBranch'),
                                               embedding)
  params = {'trunk': trunk.params, 'reduce': reduce, 'embed': embed,
            'mask_head': mask_head, **score}
  return DeepMaskWeights(
      params=params, constants={'trunk': trunk.constants}, trunk=trunk,
      feature_channels=reduce['kernel'].shape[-1], embedding=embedding,
      feature_size=fsz, mask_size=mask_size, label_size=label_size,
      score_hidden=score_hidden, dropout=dropout, crop_module=crop_module)
