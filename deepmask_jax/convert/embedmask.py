"""An EmbedMask state dict (maskrcnn-benchmark names) -> our EmbedMask variables.

    backbone.body.*                      -> trunk (state_dict.map_msra_trunk)
    backbone.fpn.fpn_inner{2,3,4}        -> fpn/lateral{3,4,5}   (C3..C5)
    backbone.fpn.fpn_layer{2,3,4}        -> fpn/output{3,4,5}
    backbone.fpn.top_blocks.p6, .p7      -> fpn/p6, fpn/p7
    rpn.head.{cls,bbox,mask}_tower.{3i}  -> head/<tower>/conv{i}  (Conv2d)
    rpn.head.{cls,bbox,mask}_tower.{3i+1}-> head/<tower>/norm{i}  (GroupNorm)
    rpn.head.cls_logits, bbox_pred, centerness -> head/<same>
    rpn.head.proposal_{spatial,other}_embed_pred -> head/proposal_{spatial,other}
    rpn.head.pixel_{spatial,other}_embed_pred    -> head/pixel_{spatial,other}
    rpn.head.proposal_margin_pred        -> head/proposal_margin
    rpn.head.scales.{l}.scale            -> head/box_scales_{l}/scale
    rpn.head.margin_scales.{l}.scale     -> head/margin_scales_{l}/scale
    rpn.head.position_scale.scale        -> head/position_scale/scale

The numbers of classes (cls_logits), embedding channels (proposal_margin_pred),
tower convs and FPN channels are read from the shapes. A V2 checkpoint (May
2020: one margin per proposal, no margin_scales) is the V3 model with that
margin conv repeated over the D channels and margin_scales 1: the
probabilities exp(-m * sum_d (p_d - q_d)^2) are the same.
"""

import dataclasses

import numpy as np

from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.state_dict import (MaskrcnnTrunk, TensorSource,
                                             Trunk, conv_variables,
                                             map_msra_trunk)

HEAD = 'rpn.head.'
FPN = 'backbone.fpn.'
BODY = 'backbone.body.'
FPN_CONVS = (('fpn_inner2', 'lateral3', 1), ('fpn_inner3', 'lateral4', 1),
             ('fpn_inner4', 'lateral5', 1), ('fpn_layer2', 'output3', 3),
             ('fpn_layer3', 'output4', 3), ('fpn_layer4', 'output5', 3),
             ('top_blocks.p6', 'p6', 3), ('top_blocks.p7', 'p7', 3))
TOWERS = ('cls_tower', 'bbox_tower', 'mask_tower')
NUM_LEVELS = 5  # P3..P7: one box scale and one margin scale each.
EMBEDMASK_KEY = f'{HEAD}proposal_margin_pred.weight'


@dataclasses.dataclass
class EmbedMaskWeights:
  params: dict
  constants: dict
  trunk: Trunk
  num_classes: int
  embed_dim: int
  fpn_channels: int
  num_convs: int
  notes: list


def _conv(source: TensorSource, key: str, shape: tuple) -> dict:
  weight = source.take(f'{key}.weight', shape)
  return conv_variables(weight, source.take(f'{key}.bias', weight.shape[:1]))


def _fpn(source: TensorSource, trunk: Trunk) -> tuple:
  c5 = trunk.widths[-1] * trunk.expansion
  channels = source.take(f'{FPN}fpn_inner4.weight', (None, c5, 1, 1)).shape[0]
  inputs = {f'lateral{level}': trunk.widths[level - 2] * trunk.expansion
            for level in (3, 4, 5)}
  params = {ours: _conv(source, f'{FPN}{theirs}',
                        (channels, inputs.get(ours, channels), size, size))
            for theirs, ours, size in FPN_CONVS}
  return params, channels


def _tower(source: TensorSource, name: str, channels: int) -> tuple:
  params, i = {}, 0
  while source.has(f'{HEAD}{name}.{3 * i}.weight'):
    params[f'conv{i}'] = _conv(source, f'{HEAD}{name}.{3 * i}',
                               (channels, channels, 3, 3))
    norm = f'{HEAD}{name}.{3 * i + 1}'
    params[f'norm{i}'] = {
        'scale': source.take(f'{norm}.weight', (channels,)).astype(np.float32),
        'bias': source.take(f'{norm}.bias', (channels,)).astype(np.float32)}
    i += 1
  return params, i


def _scale(source: TensorSource, key: str) -> dict:
  return {'scale': np.float32(source.take(key, (1,))[0])}


def _margin(source: TensorSource, channels: int, embed_dim: int, params,
            notes: list) -> None:
  """proposal_margin and margin_scales_{l}, V3 or (repeated) V2."""
  key = f'{HEAD}proposal_margin_pred'
  margin = _conv(source, key, (None, channels, 3, 3))
  margins = margin['kernel'].shape[-1]
  if margins == embed_dim:
    params['proposal_margin'] = margin
    for level in range(NUM_LEVELS):
      params[f'margin_scales_{level}'] = _scale(
          source, f'{HEAD}margin_scales.{level}.scale')
    return
  if margins != 1 or source.has(f'{HEAD}margin_scales.0.scale'):
    raise ConversionError(f'{key}.weight has {margins} output channels; '
                          f'expected the embedding size {embed_dim} (V3) or '
                          '1 (V2, without margin_scales)')
  params['proposal_margin'] = {
      'kernel': np.repeat(margin['kernel'], embed_dim, axis=-1),
      'bias': np.repeat(margin['bias'], embed_dim)}
  for level in range(NUM_LEVELS):
    params[f'margin_scales_{level}'] = {'scale': np.float32(1.0)}
  notes.append('V2 checkpoint (one margin per proposal): its margin conv is '
               f'repeated over the {embed_dim} embedding channels, '
               'margin_scales = 1 (the same mask probabilities)')


def _head(source: TensorSource, channels: int, notes: list) -> tuple:
  params, depths = {}, set()
  for tower in TOWERS:
    params[tower], depth = _tower(source, tower, channels)
    depths.add(depth)
  if len(depths) != 1 or 0 in depths:
    raise ConversionError(f'the head towers have {sorted(depths)} convs; our '
                          'head gives the three towers one depth >= 1')
  shape = (None, channels, 3, 3)
  params['cls_logits'] = _conv(source, f'{HEAD}cls_logits', shape)
  params['bbox_pred'] = _conv(source, f'{HEAD}bbox_pred', (4,) + shape[1:])
  params['centerness'] = _conv(source, f'{HEAD}centerness', (1,) + shape[1:])
  for who in ('proposal', 'pixel'):
    params[f'{who}_spatial'] = _conv(source, f'{HEAD}{who}_spatial_embed_pred',
                                     (2,) + shape[1:])
    params[f'{who}_other'] = _conv(source, f'{HEAD}{who}_other_embed_pred',
                                   shape)
  embed_dim = 2 + params['proposal_other']['kernel'].shape[-1]
  if params['pixel_other']['kernel'].shape[-1] != embed_dim - 2:
    raise ConversionError(
        f'{HEAD}pixel_other_embed_pred and proposal_other_embed_pred have '
        'different output channels')
  _margin(source, channels, embed_dim, params, notes)
  for level in range(NUM_LEVELS):
    params[f'box_scales_{level}'] = _scale(source, f'{HEAD}scales.{level}.scale')
  params['position_scale'] = _scale(source, f'{HEAD}position_scale.scale')
  num_classes = params['cls_logits']['kernel'].shape[-1]
  return params, num_classes, embed_dim, depths.pop()


def map_embedmask(state: dict, what: str) -> EmbedMaskWeights:
  """Our EmbedMask variables from a (prefix-stripped) state dict."""
  source = TensorSource(state, what)
  trunk = map_msra_trunk(MaskrcnnTrunk(source, BODY))
  fpn, channels = _fpn(source, trunk)
  notes = [trunk.note()]
  head, num_classes, embed_dim, num_convs = _head(source, channels, notes)
  source.check_all_used()
  params = {'trunk': trunk.params, 'fpn': fpn, 'head': head}
  return EmbedMaskWeights(params, {'trunk': trunk.constants}, trunk,
                          num_classes, embed_dim, channels, num_convs, notes)
