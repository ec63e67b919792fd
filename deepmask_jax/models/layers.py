"""Layers shared by the trunk and the heads.

Layouts: activations NHWC, conv kernels HWIO, dense kernels (in, out).
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np


def torch_default_init(fan_in: int):
  """Torch's default for new `Linear`/`SpatialConvolution` weights and biases.

  U(-1/sqrt(fan_in), +1/sqrt(fan_in)), with fan_in = nIn*kH*kW. The reference
  DeepMask and SharpMask heads start from this.
  """
  bound = 1.0 / np.sqrt(fan_in)

  def init(key, shape, dtype=jnp.float32):
    return jax.random.uniform(key, shape, dtype, -bound, bound)

  return init


def resnet_conv_init(key, shape, dtype=jnp.float32):
  """fb.resnet.torch conv init: N(0, sqrt(2 / (kH*kW*nOut))), for HWIO shapes."""
  kh, kw, _, n_out = shape
  return jax.random.normal(key, shape, dtype) * np.sqrt(2.0 / (kh * kw * n_out))


def symmetric_pad(x: jax.Array, pad: int) -> jax.Array:
  """Pads H and W of an NHWC array by copying edge pixels outward.

  Torch's `SpatialSymmetricPadding` (Matlab 'symmetric'): `cba|abcd`, not
  reflection (`dcb|abcd`).
  """
  if pad == 0:
    return x
  return jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode='symmetric')


PADDINGS = ('symmetric', 'zero')


class PaddedConv(nn.Module):
  """A square conv that keeps the size (at stride 1): pad, then VALID conv.

  Attributes:
    features: output channels.
    kernel: square kernel size; the padding is (kernel - 1) // 2 on every side.
    stride: square stride.
    padding: 'symmetric', Torch's `SpatialSymmetricPadding` (DeepMask's
      createTrunk and SharpMask pad so), or 'zero', the standard padding of
      Torch/PyTorch convs (ImageNet networks, EmbedMask).
    kernel_init: HWIO initialiser; bias follows `bias_init`.
  The kernel and bias live under the submodule 'conv' whatever the padding, so
  one set of variables fits both.
  """
  features: int
  kernel: int
  stride: int = 1
  padding: str = 'symmetric'
  use_bias: bool = True
  kernel_init: Any = None
  bias_init: Any = None
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    if self.padding not in PADDINGS:
      raise ValueError(f'padding must be one of {PADDINGS}, got {self.padding!r}')
    fan_in = x.shape[-1] * self.kernel * self.kernel
    kernel_init = self.kernel_init or torch_default_init(fan_in)
    bias_init = self.bias_init or torch_default_init(fan_in)
    pad = (self.kernel - 1) // 2
    conv_padding = 'VALID'
    if self.padding == 'symmetric':
      x = symmetric_pad(x, pad)
    else:
      conv_padding = ((pad, pad), (pad, pad))
    return nn.Conv(
        self.features, (self.kernel, self.kernel), (self.stride, self.stride),
        padding=conv_padding, use_bias=self.use_bias, kernel_init=kernel_init,
        bias_init=bias_init, dtype=self.dtype, name='conv')(x)


class FrozenAffine(nn.Module):
  """Batch norm folded into a fixed per-channel affine: y = x * scale + bias.

  `inn.ConstAffine` / `nn.SpatialConstDiagonal` of the reference. The values
  live in the 'constants' collection, so optimisers never see them; they are
  the identity unless filled from a converted checkpoint.
  """
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    channels = x.shape[-1]
    scale = self.variable('constants', 'scale', jnp.ones, (channels,))
    bias = self.variable('constants', 'bias', jnp.zeros, (channels,))
    return x * scale.value.astype(self.dtype) + bias.value.astype(self.dtype)


def upsample_nearest_2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], Torch `SpatialUpSamplingNearest(2)`."""
  return jnp.repeat(jnp.repeat(x, 2, axis=1), 2, axis=2)


def upsample_bilinear_2x(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, 2H, 2W, C], PyTorch's `F.interpolate(scale_factor=2,
  mode='bilinear', align_corners=False)`.

  Half-pixel centres: output i reads input (i + 0.5) / 2 - 0.5, clamped to
  the border. jax.image.resize's triangle kernel renormalises over in-range
  samples, which gives the same clamp, and antialiases only when shrinking.
  """
  batch, height, width, channels = x.shape
  return jax.image.resize(x, (batch, 2 * height, 2 * width, channels),
                          method='bilinear')


def threshold_relu(x: jax.Array, value: float = 1e-6) -> jax.Array:
  """Torch `nn.Threshold(0, 1e-6)`: x where x > 0, else 1e-6."""
  return jnp.where(x > 0, x, jnp.asarray(value, x.dtype))


def crop_border(x: jax.Array, pixels: int) -> jax.Array:
  """Removes `pixels` from each side of H and W (Torch negative ZeroPadding)."""
  if pixels == 0:
    return x
  return x[:, pixels:-pixels, pixels:-pixels, :]


def align_corners_matrix(size_in: int, size_out: int) -> np.ndarray:
  """Bilinear interpolation weights [size_out, size_in], align_corners=True.

  nnx `SpatialReSamplingEx{mode='bilinear'}`: source position of output i is
  i * (size_in - 1) / (size_out - 1).
  """
  if size_out == 1:
    pos = np.zeros((1,))
  else:
    pos = np.arange(size_out) * (size_in - 1) / (size_out - 1)
  low = np.clip(np.floor(pos).astype(int), 0, size_in - 1)
  high = np.clip(low + 1, 0, size_in - 1)
  frac = pos - low
  weights = np.zeros((size_out, size_in), np.float32)
  weights[np.arange(size_out), low] += 1.0 - frac
  weights[np.arange(size_out), high] += frac
  return weights


def resize_align_corners(x: jax.Array, size: Sequence[int]) -> jax.Array:
  """Bilinear align-corners resize of the last two axes of x [..., H, W]."""
  rows = jnp.asarray(align_corners_matrix(x.shape[-2], size[0]), x.dtype)
  cols = jnp.asarray(align_corners_matrix(x.shape[-1], size[1]), x.dtype)
  return jnp.einsum('ih,...hw,jw->...ij', rows, x, cols)
