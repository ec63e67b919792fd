"""The ResNet trunk (stem and three or four bottleneck layers), BN frozen.

The released fb.resnet.torch `resnet-50.t7` differs from fb.resnet.torch's own
`resnet.lua`: its convs carry biases, its projection shortcuts are bare 1x1
convs (no BN), and each bottleneck's last BN sits *after* the residual
addition. With BN folded to fixed affines (DeepMask and EmbedMask freeze it),
a block is

    relu(affine(branch(x) + shortcut(x)))
    branch = conv1x1 -> affine -> relu -> conv3x3 -> affine -> relu -> conv1x1

Layouts with BN right after every conv (resnet.lua, MSRA/torchvision) fold
that BN into the conv's weights and bias (the converter does so) and keep
the last affine the identity.

Options:
  * `padding` of the 3x3/7x7 convs: 'symmetric' is what DeepMask's createTrunk
    makes of the ImageNet network (`updatePadding`); 'zero' is the network
    as trained on ImageNet (Torch/PyTorch convs), which EmbedMask runs. The
    max pool pads with -inf either way.
  * `stride_in_1x1`: the MSRA/Detectron layout puts the stride of a
    downsampling block in its first 1x1 conv; fb.resnet.torch puts it in the
    3x3. The projection shortcut strides in both.
Layouts: input NHWC, kernels HWIO.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepmask_jax.models.convolution import PaddedConv
from deepmask_jax.models.layers import (FrozenAffine, max_pool_3x3_stride2,
                                        resnet_conv_init)


def _conv(features, kernel, stride, padding, dtype, name):
  """A trunk conv: fb.resnet.torch init, zero bias (ImageNet weights replace both)."""
  return PaddedConv(features, kernel, stride, padding,
                    kernel_init=resnet_conv_init,
                    bias_init=nn.initializers.zeros, dtype=dtype, name=name)


class Bottleneck(nn.Module):
  """One residual block; `stride` sits on the 3x3 conv, or on the first 1x1
  conv with `stride_in_1x1`, and on the projection."""
  width: int
  stride: int = 1
  expansion: int = 4
  padding: str = 'symmetric'
  stride_in_1x1: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_channels = self.width * self.expansion
    stride_1x1, stride_3x3 = ((self.stride, 1) if self.stride_in_1x1
                              else (1, self.stride))
    y = _conv(self.width, 1, stride_1x1, self.padding, self.dtype, 'conv1')(x)
    y = nn.relu(FrozenAffine(self.dtype, name='affine1')(y))
    y = _conv(self.width, 3, stride_3x3, self.padding, self.dtype, 'conv2')(y)
    y = nn.relu(FrozenAffine(self.dtype, name='affine2')(y))
    y = _conv(out_channels, 1, 1, self.padding, self.dtype, 'conv3')(y)
    shortcut = x
    if x.shape[-1] != out_channels or self.stride != 1:
      shortcut = _conv(out_channels, 1, self.stride, self.padding, self.dtype,
                       'projection')(x)
    return nn.relu(FrozenAffine(self.dtype, name='affine_out')(y + shortcut))


class Trunk(nn.Module):
  """conv1 7x7/2 -> affine -> relu -> maxpool 3x3/2 -> layer1..layerN.

  Attributes:
    stem_width: conv1 output channels (64 in ResNet-50).
    widths: bottleneck widths per layer: (64, 128, 256) for DeepMask's trunk
      through layer3, (64, 128, 256, 512) for the whole ResNet-50.
    depths: blocks per layer ((3, 4, 6) or (3, 4, 6, 3)).
    padding: 'symmetric' or 'zero' (see the module docstring). No default:
      DeepMask and EmbedMask each state theirs.
    stride_in_1x1: MSRA layout (see the module docstring).
  Variables: params and constants under 'conv1', 'affine1' and
  'layer{k}_{block}' (k from 1).
  Returns a dict of NHWC features: 'conv1' (after its ReLU, /2) and
  'layer{k}' (/4, /8, /16, /32): SharpMask's skip sources and, as C3, C4, C5,
  'layer2', 'layer3', 'layer4' for an FPN.
  """
  padding: str
  stem_width: int = 64
  widths: Sequence[int] = (64, 128, 256)
  depths: Sequence[int] = (3, 4, 6)
  expansion: int = 4
  stride_in_1x1: bool = False
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    if len(self.widths) != len(self.depths):
      raise ValueError(f'trunk widths {self.widths} and depths {self.depths} '
                       'name different numbers of layers')
    x = images.astype(self.dtype)
    x = _conv(self.stem_width, 7, 2, self.padding, self.dtype, 'conv1')(x)
    x = nn.relu(FrozenAffine(self.dtype, name='affine1')(x))
    features = {'conv1': x}
    x = max_pool_3x3_stride2(x)
    for layer, (width, depth) in enumerate(zip(self.widths, self.depths)):
      for block in range(depth):
        stride = 2 if (layer > 0 and block == 0) else 1
        x = Bottleneck(width, stride, self.expansion, self.padding,
                       self.stride_in_1x1, self.dtype,
                       name=f'layer{layer + 1}_{block}')(x)
      features[f'layer{layer + 1}'] = x
    return features
