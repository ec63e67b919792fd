"""DeepMask ("DeepMask-ours" of the SharpMask paper): trunk, mask and score heads.

One set of parameters drives two forms:
  * the patch form `__call__` on [B, wSz, wSz, 3] patches (wSz = iSz + 32 = 192):
    trunk -> crop 1 px at layer3 -> 1x1 conv -> ReLU -> 10x10 "linear" -> 512-d,
    mask logits [B, gSz, gSz] (56x56 upsampled bilinearly, align-corners) and
    score logits [B];
  * the fully convolutional form `dense` on whole images: no crop, the 10x10
    linear as a VALID conv and the heads as 1x1 convs, stride 16.
The 12800->512 linear is stored as an HWIO conv kernel [fSz, fSz, 128, 512];
in the patch form it sees exactly one fSz x fSz window, so it *is* the linear.

Mixed precision (`dtype=bfloat16`): parameters stay float32 and every conv and
matmul computes in `dtype` (frozen BN as an affine in `dtype` too); the mask
and score logits leave the heads as float32, so losses, sigmoids, top-k and
paste thresholds never see bf16 rounding beyond the heads' own.
"""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepmask_jax.models.convolution import Conv
from deepmask_jax.models.layers import (crop_border, resize_align_corners,
                                        threshold_relu, torch_default_init)
from deepmask_jax.families.deepmask.patch_geometry import STRIDE
from deepmask_jax.models.resnet import Trunk


def _dense(features: int, fan_in: int, dtype, name: str) -> nn.Dense:
  init = torch_default_init(fan_in)
  return nn.Dense(features, kernel_init=init, bias_init=init, dtype=dtype,
                  name=name)


class DeepMask(nn.Module):
  """DeepMask with configurable trunk depth/width (tiny trunks for tests/demo).

  Attributes:
    object_window: iSz, the side the mask covers (160); fSz = iSz / 16.
    mask_size: oSz, the mask head's native side (56).
    label_size: gSz, the side training masks are compared at (112).
  """
  stem_width: int = 64
  widths: Sequence[int] = (64, 128, 256)
  depths: Sequence[int] = (3, 4, 6)
  expansion: int = 4
  trunk_norm: str = 'frozen'
  feature_channels: int = 128
  embedding: int = 512
  score_hidden: int = 1024
  dropout: float = 0.5
  object_window: int = 160
  mask_size: int = 56
  label_size: int = 112
  dtype: Any = jnp.float32

  @property
  def feature_size(self) -> int:
    """fSz: side of the cropped layer3 map over the object window."""
    return self.object_window // STRIDE

  def setup(self):
    trunk_channels = self.widths[-1] * self.expansion
    fsz = self.feature_size
    # createTrunk pads the ImageNet trunk's convs symmetrically.
    self.trunk = Trunk(padding='symmetric', stem_width=self.stem_width,
                       widths=tuple(self.widths), depths=tuple(self.depths),
                       expansion=self.expansion, norm=self.trunk_norm,
                       dtype=self.dtype)
    init = torch_default_init(trunk_channels)
    self.reduce = Conv(self.feature_channels, 1, kernel_init=init,
                       bias_init=init, dtype=self.dtype)
    init = torch_default_init(self.feature_channels * fsz * fsz)
    self.embed = Conv(self.embedding, fsz, kernel_init=init, bias_init=init,
                      dtype=self.dtype)
    self.mask_head = _dense(self.mask_size ** 2, self.embedding, self.dtype,
                            'mask_head')
    self.score_hidden_layer = _dense(self.score_hidden, self.embedding,
                                     self.dtype, 'score_hidden_layer')
    self.score_out = _dense(1, self.score_hidden, self.dtype, 'score_out')
    self.score_dropout = nn.Dropout(self.dropout)

  def encode(self, images: jax.Array, crop: bool = True):
    """Trunk features and the shared embedding.

    Args:
      images: [B, H, W, 3] normalised RGB.
      crop: True for patches (1 px layer3 crop), False for the dense form.
    Returns:
      (features, embedding): the trunk's dict ('conv1', 'layer1', 'layer2',
      'layer3', the last cropped when `crop`) and the embedding
      [B, H/16 - 2*crop - fSz + 1, ..., 512] ([B, 1, 1, 512] for patches).
    """
    features = self.trunk(images)
    if crop:
      features = dict(features, layer3=crop_border(features['layer3'], 1))
    x = nn.relu(self.reduce(features['layer3']))
    return features, self.embed(x)

  def mask_logits(self, embedding: jax.Array) -> jax.Array:
    """[..., 512] -> [..., oSz, oSz] float32 (row-major: output i*oSz + j is
    pixel i, j)."""
    flat = self.mask_head(embedding).astype(jnp.float32)
    return flat.reshape(flat.shape[:-1] + (self.mask_size, self.mask_size))

  def score_logits(self, embedding: jax.Array, train: bool = False) -> jax.Array:
    """[..., 512] -> [...] float32: dropout, 1024, threshold-ReLU, dropout, 1."""
    x = self.score_dropout(embedding, deterministic=not train)
    x = threshold_relu(self.score_hidden_layer(x))
    x = self.score_dropout(x, deterministic=not train)
    return self.score_out(x)[..., 0].astype(jnp.float32)

  def __call__(self, images: jax.Array, train: bool = False):
    """Patch form. images [B, wSz, wSz, 3] -> float32 logits {'mask':
    [B, gSz, gSz], 'score': [B]} (the upsampling runs on float32 logits)."""
    _, embedding = self.encode(images, crop=True)
    embedding = embedding[:, 0, 0, :]
    mask = self.mask_logits(embedding)
    if self.label_size != self.mask_size:
      mask = resize_align_corners(mask, (self.label_size, self.label_size))
    return {'mask': mask, 'score': self.score_logits(embedding, train)}

  def dense(self, images: jax.Array):
    """Fully convolutional form on [B, H, W, 3] (H, W multiples of 16).

    Returns {'score': [B, H', W'], 'mask': [B, H', W', oSz, oSz] (float32
    logits), 'embedding': [B, H', W', 512] (in `dtype`)} with H' = H/16 - fSz + 1. Position (r, c)
    is the window whose cropped layer3 cells are [r, r + fSz) x [c, c + fSz).
    """
    _, embedding = self.encode(images, crop=False)
    return {'score': self.score_logits(embedding),
            'mask': self.mask_logits(embedding), 'embedding': embedding}


def deepmask_from_config(config, label_size=None) -> DeepMask:
  """Builds DeepMask from the `trunk`, `head` and `patch` config fields."""
  return DeepMask(
      stem_width=config.trunk.stem_width, widths=tuple(config.trunk.widths),
      depths=tuple(config.trunk.depths), expansion=config.trunk.expansion,
      trunk_norm=config.trunk.get('norm', 'frozen'),
      feature_channels=config.head.feature_channels,
      embedding=config.head.embedding, score_hidden=config.head.score_hidden,
      dropout=config.head.dropout, object_window=config.patch.object_window,
      mask_size=config.patch.mask_size,
      label_size=label_size or config.patch.label_size,
      dtype=jnp.dtype(config.dtype))
