"""Layers shared by the trunk and the heads.

Layouts: activations NHWC, conv kernels HWIO, dense kernels (in, out).
"""

import functools
import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.models import backend_forms


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


def group_norm(channels: int, groups: int, dtype, name: str,
               scale_init=nn.initializers.ones) -> nn.GroupNorm:
  """PyTorch's GroupNorm: gcd(groups, channels) groups, eps 1e-5 (Flax's
  default is 1e-6) and two-pass variance, mean((x - mean)^2): Flax's default
  E[x^2] - E[x]^2 cancels in float32 when the mean dwarfs the spread (mean 50,
  std 3e-3: half the variance lost)."""
  return nn.GroupNorm(math.gcd(groups, channels), epsilon=1e-5, dtype=dtype,
                      use_fast_variance=False, scale_init=scale_init,
                      name=name)


def max_pool_3x3_stride2(x: jax.Array) -> jax.Array:
  """[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), C]: the ResNet stem's max pool
  (3 x 3 window, stride 2, padding 1 that never wins).

  The values equal `nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))`, which
  GPU and TPU run; on CPU it is the maximum of nine strided slices because
  the gradient of that is 6x faster on XLA's CPU backend than
  reduce_window's (models/backend_forms.py). The gradient of tied maxima is
  then split between them instead of going to one; after a ReLU, ties are
  between zeros, whose gradient the ReLU stops either way.
  """
  if backend_forms.backend() != 'cpu':
    return nn.max_pool(x, (3, 3), (2, 2), ((1, 1), (1, 1)))
  _, height, width, _ = x.shape
  padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)),
                   constant_values=-jnp.inf)
  rows, cols = (height - 1) // 2 + 1, (width - 1) // 2 + 1
  windows = [padded[:, i:i + 2 * rows - 1:2, j:j + 2 * cols - 1:2]
             for i in range(3) for j in range(3)]
  return functools.reduce(jnp.maximum, windows)


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
