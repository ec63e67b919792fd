"""SharpMask: DeepMask plus a top-down refinement over trunk skip features.

Reference SharpMask.lua (km = ks = 32). The mask encoding M1 [B, 10, 10, 32]
comes from a linear 512 -> 3200 (Torch View order C, H, W). Refinement module
i = 1..4 adds a horizontal net on skip feature F_i (cropped layer3, layer2,
layer1, conv1) to a vertical net on M_i, applies ReLU and 2x nearest
upsampling: 32x10^2 -> 16x20^2 -> 8x40^2 -> 4x80^2 -> 2x160^2, then a 3x3 conv
gives [B, 160, 160] logits over the object window. All 3x3 convs pad
symmetrically. The DeepMask part is frozen during SharpMask training.

Parameter count: neths 1,090,466 + netvs 1,660,050 = 2,750,516, the figure the
reference prints; its final 2->1 conv (19 parameters) is added after that
print, so the refinement really holds 2,750,535.
"""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepmask_jax.families.deepmask.model import DeepMask
from deepmask_jax.models.convolution import PaddedConv
from deepmask_jax.models.layers import crop_border, torch_default_init

# Skip sources, top-down: trunk feature, horizontal hidden width, border crop
# (in patch form) that aligns the feature with the object window.
SKIP_SOURCES = (('layer3', 64, 0), ('layer2', 64, 2), ('layer1', 64, 4),
                ('conv1', 32, 8))
NUM_REFINEMENTS = len(SKIP_SOURCES)


class Horizontal(nn.Module):
  """neth_i: conv3x3 C->hidden, ReLU, hidden->n, ReLU, n->n/2."""
  hidden: int
  channels: int
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x):
    x = nn.relu(PaddedConv(self.hidden, 3, dtype=self.dtype, name='conv1')(x))
    x = nn.relu(PaddedConv(self.channels, 3, dtype=self.dtype, name='conv2')(x))
    return PaddedConv(self.channels // 2, 3, dtype=self.dtype, name='conv3')(x)


class Vertical(nn.Module):
  """netv_i: conv3x3 n->n, ReLU, n->n/2; with `upsampled`, the first conv
  reads the nearest-2x upsampled input (computed without building it)."""
  channels: int
  dtype: Any = jnp.float32
  upsampled: bool = False

  @nn.compact
  def __call__(self, x):
    x = nn.relu(PaddedConv(self.channels, 3, upsampled=self.upsampled,
                           dtype=self.dtype, name='conv1')(x))
    return PaddedConv(self.channels // 2, 3, dtype=self.dtype, name='conv2')(x)


class Refinement(nn.Module):
  """The top-down path alone (the trainable part of SharpMask).

  Attributes:
    km: mask-encoding channels (32); module i works with km / 2^(i-1).
    feature_size: fSz, side of the mask encoding (10).
  """
  km: int = 32
  feature_size: int = 10
  dtype: Any = jnp.float32

  def setup(self):
    fsz = self.feature_size
    init = torch_default_init(self.embedding_size)
    self.encoding = nn.Dense(fsz * fsz * self.km, kernel_init=init,
                             bias_init=init, dtype=self.dtype)
    channels = [self.km // 2 ** i for i in range(NUM_REFINEMENTS)]
    self.horizontals = [Horizontal(hidden, n, self.dtype)
                        for (_, hidden, _), n in zip(SKIP_SOURCES, channels)]
    # Module i > 1 and the final conv read the previous output upsampled.
    self.verticals = [Vertical(n, self.dtype, upsampled=i > 0)
                      for i, n in enumerate(channels)]
    self.final = PaddedConv(1, 3, upsampled=True, dtype=self.dtype)

  embedding_size: int = 512

  def horizontal(self, features: dict, crop: bool = True) -> list:
    """neth_i outputs for every skip source.

    Args:
      features: the trunk dict of `DeepMask.encode` (layer3 already cropped
        in the patch form).
      crop: apply the skip crops (patch form); False runs them on whole maps
        (dense inference, where windows are cut out afterwards).
    Returns four NHWC maps with km/2, km/4, km/8, km/16 channels.
    """
    return [net(crop_border(features[name], pixels if crop else 0))
            for net, (name, _, pixels) in zip(self.horizontals, SKIP_SOURCES)]

  def refine(self, embedding: jax.Array, horizontals: list) -> jax.Array:
    """[B, 512] and four skip maps aligned with the window -> [B, S, S] float32
    logits (computed in `dtype`)."""
    fsz = self.feature_size
    m = self.encoding(embedding).reshape(-1, self.km, fsz, fsz)
    m = m.transpose(0, 2, 3, 1)  # Torch View(C, H, W) -> NHWC.
    # Module i's input is upsample_nearest_2x of module i-1's output; the
    # convs that read it upsample implicitly (`PaddedConv(upsampled=True)`).
    for vertical, h in zip(self.verticals, horizontals):
      m = nn.relu(h + vertical(m))
    return self.final(m)[..., 0].astype(jnp.float32)

  def __call__(self, features: dict, embedding: jax.Array) -> jax.Array:
    return self.refine(embedding, self.horizontal(features, crop=True))


class SharpMask(nn.Module):
  """DeepMask (frozen in training) + Refinement.

  Parameters: {'deepmask': ..., 'refinement': ...}. The patch form returns
  {'mask': [B, iSz, iSz] logits, 'score': [B]}.
  """
  deepmask: DeepMask
  km: int = 32

  def setup(self):
    self.refinement = Refinement(self.km, self.deepmask.feature_size,
                                 self.deepmask.dtype,
                                 embedding_size=self.deepmask.embedding)

  def __call__(self, images: jax.Array, train: bool = False):
    features, embedding = self.deepmask.encode(images, crop=True)
    embedding = embedding[:, 0, 0, :]
    if self.is_initializing():
      # Keep DeepMask's own mask head (maskBranchDM): dense inference and
      # loading a DeepMask checkpoint need the full DeepMask tree.
      self.deepmask.mask_logits(embedding)
    return {'mask': self.refinement(features, embedding),
            'score': self.deepmask.score_logits(embedding, train)}

  def dense(self, images: jax.Array):
    """DeepMask's dense maps plus the whole-map horizontal features.

    Returns the `DeepMask.dense` dict plus 'horizontals': four maps at strides
    16, 8, 4, 2 of the uncropped trunk features, from which inference cuts
    the windows of the top-scoring positions.
    """
    features, embedding = self.deepmask.encode(images, crop=False)
    return {'score': self.deepmask.score_logits(embedding),
            'mask': self.deepmask.mask_logits(embedding),
            'embedding': embedding,
            'horizontals': self.refinement.horizontal(features, crop=False)}

  def refine(self, embedding: jax.Array, horizontals: list) -> jax.Array:
    return self.refinement.refine(embedding, horizontals)
