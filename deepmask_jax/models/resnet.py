"""The ResNet trunk through layer3, as in the released fb.resnet.torch file.

The released `resnet-50.t7` differs from fb.resnet.torch's own `resnet.lua`:
its convs carry biases, its projection shortcuts are bare 1x1 convs (no BN),
and each bottleneck's last BN sits *after* the residual addition. With BN
folded to fixed affines (DeepMask freezes it), a block is

    relu(affine(branch(x) + shortcut(x)))
    branch = conv1x1 -> affine -> relu -> conv3x3(stride) -> affine -> relu -> conv1x1

Every 3x3 and 7x7 conv uses symmetric padding; the max pool pads with -inf.
Layouts: input NHWC, kernels HWIO.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepmask_jax.models.layers import FrozenAffine, SymConv, resnet_conv_init


def _conv(features, kernel, stride=1, dtype=jnp.float32, name=None):
  """A trunk conv: fb.resnet.torch init, zero bias (ImageNet weights replace both)."""
  return SymConv(features, kernel, stride, kernel_init=resnet_conv_init,
                 bias_init=nn.initializers.zeros, dtype=dtype, name=name)


class Bottleneck(nn.Module):
  """One residual block; the stride sits on the 3x3 conv (and the projection)."""
  width: int
  stride: int = 1
  expansion: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    out_channels = self.width * self.expansion
    y = _conv(self.width, 1, dtype=self.dtype, name='conv1')(x)
    y = nn.relu(FrozenAffine(self.dtype, name='affine1')(y))
    y = _conv(self.width, 3, self.stride, self.dtype, name='conv2')(y)
    y = nn.relu(FrozenAffine(self.dtype, name='affine2')(y))
    y = _conv(out_channels, 1, dtype=self.dtype, name='conv3')(y)
    shortcut = x
    if x.shape[-1] != out_channels or self.stride != 1:
      shortcut = _conv(out_channels, 1, self.stride, self.dtype,
                       name='projection')(x)
    return nn.relu(FrozenAffine(self.dtype, name='affine_out')(y + shortcut))


class Trunk(nn.Module):
  """conv1 7x7/2 -> affine -> relu -> maxpool 3x3/2 -> layer1..3 (stride 16).

  Attributes:
    stem_width: conv1 output channels (64 in ResNet-50).
    widths: bottleneck widths of layer1..3 (64, 128, 256).
    depths: blocks per layer (3, 4, 6).
  Returns a dict of NHWC features: 'conv1' (after its ReLU, /2), 'layer1' (/4),
  'layer2' (/8), 'layer3' (/16): the skip sources SharpMask reads.
  """
  stem_width: int = 64
  widths: Sequence[int] = (64, 128, 256)
  depths: Sequence[int] = (3, 4, 6)
  expansion: int = 4
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, images: jax.Array) -> dict[str, jax.Array]:
    x = images.astype(self.dtype)
    x = _conv(self.stem_width, 7, 2, self.dtype, name='conv1')(x)
    x = nn.relu(FrozenAffine(self.dtype, name='affine1')(x))
    features = {'conv1': x}
    x = nn.max_pool(x, (3, 3), (2, 2), padding=((1, 1), (1, 1)))
    for layer, (width, depth) in enumerate(zip(self.widths, self.depths)):
      for block in range(depth):
        stride = 2 if (layer > 0 and block == 0) else 1
        x = Bottleneck(width, stride, self.expansion, self.dtype,
                       name=f'layer{layer + 1}_{block}')(x)
      features[f'layer{layer + 1}'] = x
    return features
