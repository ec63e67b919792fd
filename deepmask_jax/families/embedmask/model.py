"""EmbedMask (V3, reference_embedmask.md section 1): ResNet + FPN + FCOS-style head.

    images -> Trunk (zero padding, frozen BN) -> C3, C4, C5 -> FPN -> P3..P7
    per level (towers shared over levels):
      cls_tower(P_l)  -> cls_logits                          [C]
      bbox_tower(P_l) -> relu(box_scales[l] * bbox_pred)     [4] ltrb, stride units
                      -> centerness                          [1] logit
                      -> proposal embedding: spatial (2) + position_scale * xy / 100,
                         other (D - 2)                       [D]
                      -> proposal margin: exp(conv(tower / 32)), its 2 spatial
                         channels times margin_scales[l]     [D] > 0
    mask_tower(P3)    -> pixel embedding like the proposal one, at stride 8,
                         then bilinear x2 (half-pixel) to stride 4.

xy is a location's image-pixel position (fcos_geometry.locations); one
`position_scale` serves pixels and proposals, so both embeddings' spatial
channels live in the same units. The reference's EMBED_REDUCE_FACTOR is 1
(the proposal convs read the bbox tower as is). Towers are
num_convs x [conv3x3, GroupNorm (eps 1e-5 and two-pass variance, as PyTorch's),
ReLU].

Init (EmbedMaskHead): every head conv N(0, 0.01) with zero bias, except the
cls_logits bias -log((1 - p) / p) and the margin bias
log(-ln 0.5 / prior_margin^2), so that at init a pixel at embedding distance
prior_margin from a proposal has P = exp(-sum_d m_d (p_d - q_d)^2) = 0.5.
Scales start at 1. The FPN follows maskrcnn-benchmark (fpn.py).

Compute runs in `dtype` (params float32); the head's outputs, and everything
after its last convs (scales, positions, exp, upsampling), are float32.
"""

import math
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from deepmask_jax.families.embedmask import fcos_geometry
from deepmask_jax.models.fpn import FPN, fpn_inputs
from deepmask_jax.models.layers import group_norm, upsample_bilinear_2x
from deepmask_jax.models.resnet import Trunk

POSITION_UNIT = 100.0  # Pixels per embedding unit of the spatial channels.
NUM_SPATIAL = 2  # Embedding channels that carry (x, y).


class Scale(nn.Module):
  """x * s with one learnable scalar s (maskrcnn-benchmark's `Scale`)."""
  init_value: float = 1.0

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    scale = self.param('scale', nn.initializers.constant(self.init_value), ())
    return x * scale


def _head_conv(features: int, dtype, name: str, bias: float = 0.0) -> nn.Conv:
  """A 3x3 head conv (zero padding 1): N(0, 0.01) weights, constant bias."""
  return nn.Conv(features, (3, 3), padding=((1, 1), (1, 1)),
                 kernel_init=nn.initializers.normal(0.01),
                 bias_init=nn.initializers.constant(bias), dtype=dtype,
                 name=name)


class Tower(nn.Module):
  """num_convs x [conv3x3, GroupNorm, ReLU] at constant width.

  GroupNorm as PyTorch's (`layers.group_norm`): gcd(norm_groups, channels)
  groups, 32 at 256 channels; tiny test widths get fewer.
  """
  channels: int
  num_convs: int
  norm_groups: int = 32
  dtype: Any = jnp.float32

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i in range(self.num_convs):
      x = _head_conv(self.channels, self.dtype, f'conv{i}')(x)
      x = group_norm(self.channels, self.norm_groups, self.dtype,
                     f'norm{i}')(x)
      x = nn.relu(x)
    return x


def _flatten_levels(per_level: Sequence[jax.Array]) -> jax.Array:
  """[B, H_l, W_l, K] per level -> [B, L, K], level-major, row-major."""
  return jnp.concatenate([x.reshape(x.shape[0], -1, x.shape[-1])
                          for x in per_level], axis=1)


class EmbedMaskHead(nn.Module):
  """The shared towers and per-location outputs (see the module docstring)."""
  num_classes: int = 80
  embed_dim: int = 16
  channels: int = 256
  num_convs: int = 4
  norm_groups: int = 32
  num_levels: int = 5
  prior_prob: float = 0.01
  prior_margin: float = 2.0
  margin_reduce_factor: float = 32.0
  dtype: Any = jnp.float32

  def setup(self):
    if self.embed_dim <= NUM_SPATIAL:
      raise ValueError(f'embed_dim must exceed {NUM_SPATIAL}, got '
                       f'{self.embed_dim}')
    tower = lambda name: Tower(self.channels, self.num_convs,
                               self.norm_groups, self.dtype, name=name)
    self.cls_tower = tower('cls_tower')
    self.bbox_tower = tower('bbox_tower')
    self.mask_tower = tower('mask_tower')
    free = self.embed_dim - NUM_SPATIAL
    conv = lambda features, name, bias=0.0: _head_conv(features, self.dtype,
                                                       name, bias)
    self.cls_logits = conv(self.num_classes, 'cls_logits',
                           -math.log((1 - self.prior_prob) / self.prior_prob))
    self.bbox_pred = conv(4, 'bbox_pred')
    self.centerness = conv(1, 'centerness')
    self.proposal_spatial = conv(NUM_SPATIAL, 'proposal_spatial')
    self.proposal_other = conv(free, 'proposal_other')
    self.proposal_margin = conv(
        self.embed_dim, 'proposal_margin',
        math.log(-math.log(0.5) / self.prior_margin ** 2))
    self.pixel_spatial = conv(NUM_SPATIAL, 'pixel_spatial')
    self.pixel_other = conv(free, 'pixel_other')
    self.box_scales = [Scale() for _ in range(self.num_levels)]
    self.margin_scales = [Scale() for _ in range(self.num_levels)]
    self.position_scale = Scale()

  def _embedding(self, spatial: jax.Array, other: jax.Array,
                 xy: jax.Array) -> jax.Array:
    """spatial [..., 2] + position_scale * xy / 100, then other: [..., D]."""
    positions = self.position_scale(xy / POSITION_UNIT)
    return jnp.concatenate([spatial.astype(jnp.float32) + positions,
                            other.astype(jnp.float32)], axis=-1)

  def _margin(self, box_features: jax.Array, level: int) -> jax.Array:
    """exp(conv(tower / reduce)), spatial channels scaled per level: [..., D]."""
    logit = self.proposal_margin(box_features / self.margin_reduce_factor)
    logit = logit.astype(jnp.float32)
    spatial = self.margin_scales[level](logit[..., :NUM_SPATIAL])
    return jnp.exp(jnp.concatenate([spatial, logit[..., NUM_SPATIAL:]], -1))

  def __call__(self, pyramid: Sequence[jax.Array],
               xy: jax.Array) -> dict[str, jax.Array]:
    """Per-location outputs of P3..P7.

    Args:
      pyramid: num_levels arrays [B, H_l, W_l, channels] (P3 first).
      xy: float32 [L, 2] image-pixel (x, y) of every location, level-major
        (fcos_geometry.locations); L = sum_l H_l * W_l.
    Returns:
      the dict of EmbedMask.__call__, all float32.
    """
    if len(pyramid) != self.num_levels:
      raise ValueError(f'{len(pyramid)} pyramid levels, the head has '
                       f'{self.num_levels}')
    outputs = {'cls_logits': [], 'box_regression': [], 'centerness': [],
               'proposal_spatial': [], 'proposal_other': [],
               'proposal_margin': []}
    for level, features in enumerate(pyramid):
      cls_features = self.cls_tower(features)
      box_features = self.bbox_tower(features)
      box = self.box_scales[level](self.bbox_pred(box_features).astype(
          jnp.float32))
      outputs['cls_logits'].append(self.cls_logits(cls_features))
      outputs['box_regression'].append(nn.relu(box))
      outputs['centerness'].append(self.centerness(box_features))
      outputs['proposal_spatial'].append(self.proposal_spatial(box_features))
      outputs['proposal_other'].append(self.proposal_other(box_features))
      outputs['proposal_margin'].append(self._margin(box_features, level))
    flat = {name: _flatten_levels(values).astype(jnp.float32)
            for name, values in outputs.items()}
    result = {
        'cls_logits': flat['cls_logits'],
        'box_regression': flat['box_regression'],
        'centerness': flat['centerness'][..., 0],
        'proposal_embedding': self._embedding(
            flat['proposal_spatial'], flat['proposal_other'], xy),
        'proposal_margin': flat['proposal_margin'],
    }
    result['pixel_embedding'] = self._pixel_embedding(pyramid[0], xy)
    return result

  def _pixel_embedding(self, p3: jax.Array, xy: jax.Array) -> jax.Array:
    """mask_tower(P3) -> embedding at stride 8 -> x2 bilinear: [B, 2H3, 2W3, D]."""
    height, width = p3.shape[1:3]
    p3_xy = xy[:height * width].reshape(height, width, NUM_SPATIAL)
    features = self.mask_tower(p3)
    embedding = self._embedding(self.pixel_spatial(features),
                                self.pixel_other(features), p3_xy)
    return upsample_bilinear_2x(embedding)


class EmbedMask(nn.Module):
  """The whole network; attributes as config.trunk and config.embedmask.

  Attributes:
    stem_width, widths, depths, expansion, stride_in_1x1: the four-layer
      ResNet trunk (ResNet-50: 64, (64, 128, 256, 512), (3, 4, 6, 3), 4;
      True for the MSRA weights). It pads with zeros.
    trunk_norm: 'frozen', 'frozen_per_conv' or 'group' (models/resnet.py).
    num_classes: C, foreground classes (80 on COCO).
    embed_dim: D, 2 spatial + D - 2 free embedding channels.
    fpn_channels: channels of the pyramid and head towers (256).
    num_convs: convs per tower (4).
    norm_groups: GroupNorm groups (32; gcd with the channels is used).
    strides: strides of P3..P7 (8, ..., 128), for the locations.
    dtype: compute dtype; parameters and outputs are float32.
  """
  num_classes: int = 80
  embed_dim: int = 16
  stem_width: int = 64
  widths: Sequence[int] = (64, 128, 256, 512)
  depths: Sequence[int] = (3, 4, 6, 3)
  expansion: int = 4
  stride_in_1x1: bool = True
  trunk_norm: str = 'frozen'
  fpn_channels: int = 256
  num_convs: int = 4
  norm_groups: int = 32
  strides: Sequence[int] = fcos_geometry.STRIDES
  prior_prob: float = 0.01
  prior_margin: float = 2.0
  margin_reduce_factor: float = 32.0
  dtype: Any = jnp.float32

  def setup(self):
    if len(self.widths) != 4 or len(self.depths) != 4:
      raise ValueError('EmbedMask needs a four-layer trunk (C3..C5 are '
                       f'layer2..layer4); got widths {self.widths}, depths '
                       f'{self.depths}')
    self.trunk = Trunk(padding='zero', stem_width=self.stem_width,
                       widths=tuple(self.widths), depths=tuple(self.depths),
                       expansion=self.expansion,
                       stride_in_1x1=self.stride_in_1x1,
                       norm=self.trunk_norm, dtype=self.dtype)
    self.fpn = FPN(self.fpn_channels, self.dtype)
    self.head = EmbedMaskHead(
        num_classes=self.num_classes, embed_dim=self.embed_dim,
        channels=self.fpn_channels, num_convs=self.num_convs,
        norm_groups=self.norm_groups, num_levels=len(self.strides),
        prior_prob=self.prior_prob, prior_margin=self.prior_margin,
        margin_reduce_factor=self.margin_reduce_factor, dtype=self.dtype)

  def __call__(self, images: jax.Array, train: bool = False):
    """Dense outputs for every location of P3..P7.

    Args:
      images: [B, H, W, 3] normalised, H and W multiples of 32.
      train: unused (no dropout; BN is frozen); kept for the trainer's calls.
    Returns dict (float32), L = sum_l H_l * W_l in fcos_geometry order:
      'cls_logits' [B, L, C]; 'box_regression' [B, L, 4] ltrb distances in
      units of the level's stride (>= 0); 'centerness' [B, L] logits;
      'proposal_embedding' [B, L, D]; 'proposal_margin' [B, L, D] (> 0);
      'pixel_embedding' [B, H/4, W/4, D].
    """
    del train
    height, width = images.shape[1:3]
    shapes = fcos_geometry.level_shapes(height, width, self.strides)
    xy, _, _ = fcos_geometry.locations(height, width, self.strides)
    pyramid = self.fpn(*fpn_inputs(self.trunk(images)))
    got = [tuple(p.shape[1:3]) for p in pyramid]
    if got != [tuple(s) for s in shapes]:
      raise ValueError(f'pyramid levels {got} do not match the strides '
                       f'{tuple(self.strides)} ({shapes})')
    return self.head(pyramid, jnp.asarray(xy))


def embedmask_from_config(config) -> EmbedMask:
  """EmbedMask from `config.trunk`, `config.embedmask` and `config.dtype`."""
  trunk, cfg = config.trunk, config.embedmask
  return EmbedMask(
      num_classes=cfg.num_classes, embed_dim=cfg.embed_dim,
      stem_width=trunk.stem_width, widths=tuple(trunk.widths),
      depths=tuple(trunk.depths), expansion=trunk.expansion,
      stride_in_1x1=trunk.stride_in_1x1,
      trunk_norm=trunk.get('norm', 'frozen'), fpn_channels=cfg.fpn_channels,
      num_convs=cfg.num_convs, norm_groups=cfg.get('norm_groups', 32),
      strides=tuple(cfg.strides),
      prior_prob=cfg.prior_prob, prior_margin=cfg.prior_margin,
      margin_reduce_factor=cfg.margin_reduce_factor,
      dtype=jnp.dtype(config.dtype))


def frozen_trunk_paths(freeze_at: int) -> tuple[str, ...]:
  """Param-path prefixes frozen by maskrcnn-benchmark's FREEZE_CONV_BODY_AT.

  Stage 0 is the stem, stage k the trunk's layer k; stages below `freeze_at`
  are frozen (2: the stem and layer1). Paths are '/'-joined param keys; a
  parameter is frozen when its path *string* starts with a prefix
  ('trunk/layer1_' covers every block of layer1), as `frozen_mask` tests.
  """
  prefixes = ['trunk/conv1/'] if freeze_at >= 1 else []
  prefixes += [f'trunk/layer{k}_' for k in range(1, freeze_at)]
  return tuple(prefixes)


def frozen_mask(params, freeze_at: int):
  """A pytree of bools shaped like `params`: True where frozen (for
  optax.masked / multi_transform)."""
  prefixes = frozen_trunk_paths(freeze_at)

  def frozen(path, _):
    name = '/'.join(str(getattr(key, 'key', key)) for key in path)
    return name.startswith(prefixes)

  return jax.tree_util.tree_map_with_path(frozen, params)
