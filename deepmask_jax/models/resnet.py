"""The ResNet trunk (stem and three or four bottleneck layers), BN frozen.

The released fb.resnet.torch `resnet-50.t7` differs from fb.resnet.torch's own
`resnet.lua`: its convs carry biases, its projection shortcuts are bare 1x1
convs (no BN), and each bottleneck's last BN sits *after* the residual
addition. With BN folded to fixed affines (DeepMask and EmbedMask freeze it),
a block is

    relu(affine(branch(x) + shortcut(x)))
    branch = conv1x1 -> affine -> relu -> conv3x3 -> affine -> relu -> conv1x1

Layouts with BN right after every conv (resnet.lua, MSRA/torchvision) can
fold a block's last BN and its projection's BN into those convs (exact for
the forward pass; fb.resnet.torch's resnet.lua files are converted so), or
keep every BN as its own affine (`norm = 'frozen_per_conv'`, below).

Options:
  * `padding` of the 3x3/7x7 convs: 'symmetric' is what DeepMask's createTrunk
    makes of the ImageNet network (`updatePadding`); 'zero' is the network
    as trained on ImageNet (Torch/PyTorch convs), which EmbedMask runs. The
    max pool pads with -inf either way.
  * `stride_in_1x1`: the MSRA/Detectron layout puts the stride of a
    downsampling block in its first 1x1 conv; fb.resnet.torch puts it in the
    3x3. The projection shortcut strides in both.
  * `norm`: 'frozen' (the above); 'frozen_per_conv', a fixed affine after
    every conv and none after the addition,

        relu(affine3(conv3(...)) + affine_projection(projection(x)))

    the MSRA layout as maskrcnn-benchmark trains it (FrozenBatchNorm2d after
    each conv), which the converter writes for `.pth`/`.pkl` files: folding
    a BN of scale s into the conv before it computes the same function but
    SGD then moves the folded kernel s W by its own gradient, 1/s^2 times
    the reference's step on s W; or 'group', for a trunk trained from
    scratch (the CPU demos): without ImageNet statistics a frozen affine is
    the identity and nothing keeps the activations' scale. 'group' puts a
    trainable GroupNorm (32 groups, fewer at narrow widths) after every conv,
    the last one of a block before the addition and starting at zero, so a
    block starts as its shortcut: the from-scratch recipe of Wu & He, "Group
    Normalization" (2018), and He et al., "Rethinking ImageNet
    Pre-training" (2019). No converted file has this layout.
Layouts: input NHWC, kernels HWIO.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepmask_jax.models.convolution import PaddedConv
from deepmask_jax.models.layers import (FrozenAffine, group_norm,
                                        max_pool_3x3_stride2,
                                        resnet_conv_init)

NORMS = ('frozen', 'frozen_per_conv', 'group')
FROZEN = ('frozen', 'frozen_per_conv')  # Norms that are fixed affines.
GROUPS = 32


def _conv(features, kernel, stride, padding, dtype, name):
  """A trunk conv: fb.resnet.torch init, zero bias (ImageNet weights replace both)."""
  return PaddedConv(features, kernel, stride, padding,
                    kernel_init=resnet_conv_init,
                    bias_init=nn.initializers.zeros, dtype=dtype, name=name)


def _normalize(x, norm, dtype, name, scale_init=nn.initializers.ones):
  """x through the trunk's normalisation `norm` (see the module docstring)."""
  if norm in FROZEN:
    return FrozenAffine(dtype, name=f'affine{name}')(x)
  return group_norm(x.shape[-1], GROUPS, dtype, f'norm{name}', scale_init)(x)


class Bottleneck(nn.Module):
  """One residual block; `stride` sits on the 3x3 conv, or on the first 1x1
  conv with `stride_in_1x1`, and on the projection.

  Variables: conv1..conv3 and projection; with norm 'frozen' the constants
  affine1, affine2, affine_out; with 'frozen_per_conv' the constants
  affine1..affine3 and affine_projection; with 'group' the params
  norm1..norm3 and norm_projection."""
  width: int
  stride: int = 1
  expansion: int = 4
  padding: str = 'symmetric'
  stride_in_1x1: bool = False
  norm: str = 'frozen'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_channels = self.width * self.expansion
    stride_1x1, stride_3x3 = ((self.stride, 1) if self.stride_in_1x1
                              else (1, self.stride))
    y = _conv(self.width, 1, stride_1x1, self.padding, self.dtype, 'conv1')(x)
    y = nn.relu(_normalize(y, self.norm, self.dtype, '1'))
    y = _conv(self.width, 3, stride_3x3, self.padding, self.dtype, 'conv2')(y)
    y = nn.relu(_normalize(y, self.norm, self.dtype, '2'))
    y = _conv(out_channels, 1, 1, self.padding, self.dtype, 'conv3')(y)
    shortcut = x
    if x.shape[-1] != out_channels or self.stride != 1:
      shortcut = _conv(out_channels, 1, self.stride, self.padding, self.dtype,
                       'projection')(x)
      if self.norm != 'frozen':
        shortcut = _normalize(shortcut, self.norm, self.dtype, '_projection')
    if self.norm == 'frozen':
      return nn.relu(_normalize(y + shortcut, self.norm, self.dtype, '_out'))
    # A fresh GroupNorm block starts as its shortcut (zero scale); frozen
    # affines are overwritten by the converted file.
    y = _normalize(y, self.norm, self.dtype, '3', nn.initializers.zeros)
    return nn.relu(y + shortcut)


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
    norm: 'frozen', 'frozen_per_conv' or 'group' (see the module docstring).
  Variables: params and constants under 'conv1', 'affine1' (or 'norm1') and
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
  norm: str = 'frozen'
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    if len(self.widths) != len(self.depths):
      raise ValueError(f'trunk widths {self.widths} and depths {self.depths} '
                       'name different numbers of layers')
    if self.norm not in NORMS:
      raise ValueError(f'trunk norm {self.norm!r} is not one of {NORMS}')
    x = images.astype(self.dtype)
    x = _conv(self.stem_width, 7, 2, self.padding, self.dtype, 'conv1')(x)
    x = nn.relu(_normalize(x, self.norm, self.dtype, '1'))
    features = {'conv1': x}
    x = max_pool_3x3_stride2(x)
    for layer, (width, depth) in enumerate(zip(self.widths, self.depths)):
      for block in range(depth):
        stride = 2 if (layer > 0 and block == 0) else 1
        x = Bottleneck(width, stride, self.expansion, self.padding,
                       self.stride_in_1x1, self.norm, self.dtype,
                       name=f'layer{layer + 1}_{block}')(x)
      features[f'layer{layer + 1}'] = x
    return features
