"""EmbedMask V3 (R-50-FPN) in PyTorch, train mode, for experiments only.

The network as fcos_core / maskrcnn-benchmark build it, with their module
names, so `state_dict()` is the checkpoint layout our converter reads
(deepmask_jax/convert/embedmask.py):

    backbone.body.stem.{conv1, bn1}                 7x7/2 conv, FrozenBN
    backbone.body.layer{1-4}.{i}.{conv1-3, bn1-3, downsample.0/1}
                                                    stride in the 1x1 conv
    backbone.fpn.fpn_inner{2,3,4}, fpn_layer{2,3,4}, top_blocks.p6/p7
    rpn.head.{cls,bbox,mask}_tower.{3i: conv, 3i+1: GroupNorm}, cls_logits,
      bbox_pred, centerness, proposal_{spatial,other}_embed_pred,
      proposal_margin_pred, pixel_{spatial,other}_embed_pred,
      scales.l.scale, margin_scales.l.scale, position_scale.scale

FrozenBatchNorm2d has no eps; body convs have no bias; the stem and layer1
are frozen (FREEZE_CONV_BODY_AT = 2). GroupNorm uses gcd(32, C) groups (32 at
the real 256 channels; tiny widths need fewer, as in our model).

Training targets and losses (reference_embedmask.md sections 2 and 7) live in
torch_embedmask_loss.py; the solver (SGD groups, WarmupMultiStepLR stepped
after each update) is `reference_optimizer` below. PyTorch is a
benchmark-only dependency: the package and its tests never import this file.
Layouts: NCHW activations, OIHW weights.
"""

import math

import torch
import torch.nn.functional as F
from torch import nn

STRIDES = (8, 16, 32, 64, 128)
POSITION_UNIT = 100.0


class FrozenBatchNorm2d(nn.Module):
  """maskrcnn-benchmark's: x * w / sqrt(var) + (b - mean * w / sqrt(var))."""

  def __init__(self, channels: int):
    super().__init__()
    for name, value in (('weight', 1.0), ('bias', 0.0), ('running_mean', 0.0),
                        ('running_var', 1.0)):
      self.register_buffer(name, torch.full((channels,), value))

  def forward(self, x):
    scale = self.weight * self.running_var.rsqrt()
    shift = self.bias - self.running_mean * scale
    return x * scale[None, :, None, None] + shift[None, :, None, None]


def _conv(cin, cout, kernel, stride=1, bias=False):
  return nn.Conv2d(cin, cout, kernel, stride, (kernel - 1) // 2, bias=bias)


class Stem(nn.Module):

  def __init__(self, width: int):
    super().__init__()
    self.conv1 = _conv(3, width, 7, 2)
    self.bn1 = FrozenBatchNorm2d(width)

  def forward(self, x):
    return F.max_pool2d(F.relu(self.bn1(self.conv1(x))), 3, 2, 1)


class Bottleneck(nn.Module):
  """BottleneckWithFixedBatchNorm, STRIDE_IN_1X1."""

  def __init__(self, cin: int, width: int, cout: int, stride: int):
    super().__init__()
    self.downsample = None
    if cin != cout:
      self.downsample = nn.Sequential(_conv(cin, cout, 1, stride),
                                      FrozenBatchNorm2d(cout))
    self.conv1, self.bn1 = _conv(cin, width, 1, stride), FrozenBatchNorm2d(width)
    self.conv2, self.bn2 = _conv(width, width, 3), FrozenBatchNorm2d(width)
    self.conv3, self.bn3 = _conv(width, cout, 1), FrozenBatchNorm2d(cout)

  def forward(self, x):
    y = F.relu(self.bn1(self.conv1(x)))
    y = F.relu(self.bn2(self.conv2(y)))
    y = self.bn3(self.conv3(y))
    return F.relu(y + (x if self.downsample is None else self.downsample(x)))


class Body(nn.Module):
  """Stem and layer1..layer4 -> [C2, C3, C4, C5]."""

  def __init__(self, stem: int, widths, depths, expansion: int):
    super().__init__()
    self.stem = Stem(stem)
    cin = stem
    for layer, (width, depth) in enumerate(zip(widths, depths), 1):
      blocks = []
      for block in range(depth):
        stride = 2 if layer > 1 and block == 0 else 1
        blocks.append(Bottleneck(cin, width, width * expansion, stride))
        cin = width * expansion
      self.add_module(f'layer{layer}', nn.Sequential(*blocks))

  def forward(self, x):
    x = self.stem(x)
    features = []
    for layer in range(1, 5):
      x = getattr(self, f'layer{layer}')(x)
      features.append(x)
    return features


class FPN(nn.Module):
  """FPN over C3..C5 with LastLevelP6P7 on P5 (RETINANET.USE_C5 False)."""

  def __init__(self, in_channels, channels: int):
    super().__init__()
    for level, cin in zip((2, 3, 4), in_channels):
      self.add_module(f'fpn_inner{level}', _conv(cin, channels, 1, bias=True))
      self.add_module(f'fpn_layer{level}', _conv(channels, channels, 3,
                                                 bias=True))
    self.top_blocks = nn.Module()
    self.top_blocks.p6 = _conv(channels, channels, 3, 2, bias=True)
    self.top_blocks.p7 = _conv(channels, channels, 3, 2, bias=True)

  def forward(self, c3, c4, c5):
    inner = self.fpn_inner4(c5)
    results = [self.fpn_layer4(inner)]
    for level, c in ((3, c4), (2, c3)):
      top_down = F.interpolate(inner, scale_factor=2, mode='nearest')
      inner = getattr(self, f'fpn_inner{level}')(c) + top_down
      results.insert(0, getattr(self, f'fpn_layer{level}')(inner))
    p6 = self.top_blocks.p6(results[-1])
    return results + [p6, self.top_blocks.p7(F.relu(p6))]


class Scale(nn.Module):

  def __init__(self):
    super().__init__()
    self.scale = nn.Parameter(torch.ones(1))

  def forward(self, x):
    return x * self.scale


def _tower(channels: int, num_convs: int) -> nn.Sequential:
  layers = []
  for _ in range(num_convs):
    layers += [_conv(channels, channels, 3, bias=True),
               nn.GroupNorm(math.gcd(32, channels), channels), nn.ReLU()]
  return nn.Sequential(*layers)


def _locations(height: int, width: int, stride: int, device) -> torch.Tensor:
  """[1, 2, h, w] image-pixel (x, y) of a level's locations."""
  ys = torch.arange(height, device=device) * stride + stride // 2
  xs = torch.arange(width, device=device) * stride + stride // 2
  grid_y, grid_x = torch.meshgrid(ys.float(), xs.float(), indexing='ij')
  return torch.stack([grid_x, grid_y])[None]


class EmbedMaskHead(nn.Module):
  """The V3 EmbedMaskHead (towers shared over levels; mask tower on P3)."""

  def __init__(self, channels, num_convs, num_classes, embed_dim,
               margin_reduce_factor=32.0):
    super().__init__()
    self.cls_tower = _tower(channels, num_convs)
    self.bbox_tower = _tower(channels, num_convs)
    self.mask_tower = _tower(channels, num_convs)
    conv = lambda out: _conv(channels, out, 3, bias=True)
    self.cls_logits, self.bbox_pred, self.centerness = (
        conv(num_classes), conv(4), conv(1))
    self.proposal_spatial_embed_pred = conv(2)
    self.proposal_other_embed_pred = conv(embed_dim - 2)
    self.proposal_margin_pred = conv(embed_dim)
    self.pixel_spatial_embed_pred = conv(2)
    self.pixel_other_embed_pred = conv(embed_dim - 2)
    self.scales = nn.ModuleList(Scale() for _ in STRIDES)
    self.margin_scales = nn.ModuleList(Scale() for _ in STRIDES)
    self.position_scale = Scale()
    self.margin_reduce_factor = margin_reduce_factor

  def _embedding(self, spatial, other, xy):
    return torch.cat([self.position_scale(xy) / POSITION_UNIT + spatial, other],
                     1)

  def forward(self, pyramid):
    """Per level, NCHW: cls, box (ltrb, stride units), centerness, embedding,
    margin; and the stride-8 pixel embedding [N, D, H3, W3]."""
    out = {k: [] for k in ('cls_logits', 'box_regression', 'centerness',
                           'proposal_embedding', 'proposal_margin')}
    for level, x in enumerate(pyramid):
      cls, box = self.cls_tower(x), self.bbox_tower(x)
      xy = _locations(*x.shape[2:], STRIDES[level], x.device)
      out['cls_logits'].append(self.cls_logits(cls))
      out['box_regression'].append(F.relu(self.scales[level](
          self.bbox_pred(box))))
      out['centerness'].append(self.centerness(box))
      out['proposal_embedding'].append(self._embedding(
          self.proposal_spatial_embed_pred(box),
          self.proposal_other_embed_pred(box), xy))
      margin = self.proposal_margin_pred(box / self.margin_reduce_factor)
      margin = torch.cat([self.margin_scales[level](margin[:, :2]),
                          margin[:, 2:]], 1)
      out['proposal_margin'].append(torch.exp(margin))
    mask = self.mask_tower(pyramid[0])
    xy = _locations(*mask.shape[2:], STRIDES[0], mask.device)
    out['pixel_embedding'] = self._embedding(
        self.pixel_spatial_embed_pred(mask), self.pixel_other_embed_pred(mask),
        xy)
    return out


class EmbedMask(nn.Module):
  """backbone (body + fpn) and rpn.head; `forward` gives flat outputs.

  forward(images [N, 3, H, W]) -> dict: 'cls_logits' [N, L, C],
  'box_regression' [N, L, 4], 'centerness' [N, L], 'proposal_embedding' and
  'proposal_margin' [N, L, D] (L over P3..P7, level-major, row-major, as our
  fcos_geometry), 'pixel_embedding' [N, D, H/8, W/8] (the loss upsamples it).
  """

  def __init__(self, stem=64, widths=(64, 128, 256, 512), depths=(3, 4, 6, 3),
               expansion=4, fpn_channels=256, num_convs=4, num_classes=80,
               embed_dim=16, freeze_at=2):
    super().__init__()
    self.backbone = nn.Module()
    self.backbone.body = Body(stem, widths, depths, expansion)
    self.backbone.fpn = FPN([w * expansion for w in widths[1:]], fpn_channels)
    self.rpn = nn.Module()
    self.rpn.head = EmbedMaskHead(fpn_channels, num_convs, num_classes,
                                  embed_dim)
    frozen = [self.backbone.body.stem] + [
        getattr(self.backbone.body, f'layer{k}') for k in range(1, freeze_at)]
    for module in frozen:
      for p in module.parameters():
        p.requires_grad_(False)

  def forward(self, images):
    _, c3, c4, c5 = self.backbone.body(images)
    out = self.rpn.head(self.backbone.fpn(c3, c4, c5))
    flat = lambda maps: torch.cat([m.flatten(2) for m in maps], 2).transpose(
        1, 2)
    result = {k: flat(v) for k, v in out.items() if k != 'pixel_embedding'}
    result['centerness'] = result['centerness'][..., 0]
    result['pixel_embedding'] = out['pixel_embedding']
    return result


def reference_init_(model: EmbedMask, seed: int, random_bn: bool,
                    prior_prob=0.01, prior_margin=2.0) -> None:
  """Weights as fcos_core initialises them; the body (ImageNet weights in the
  reference) kaiming_uniform(a=1) as maskrcnn-benchmark's own init, and its
  FrozenBN statistics random like a trained network's (`random_bn`) or the
  identity."""
  generator = torch.Generator().manual_seed(seed)
  with torch.no_grad():
    for name, module in model.named_modules():
      if isinstance(module, nn.Conv2d):
        if name.startswith('rpn.'):
          module.weight.normal_(0, 0.01, generator=generator)
        else:
          bound = math.sqrt(3.0 / module.weight[0].numel())
          module.weight.uniform_(-bound, bound, generator=generator)
        if module.bias is not None:
          module.bias.zero_()
      elif isinstance(module, FrozenBatchNorm2d) and random_bn:
        n = module.weight.shape[0]
        uniform = lambda lo, hi: lo + (hi - lo) * torch.rand(
            n, generator=generator)
        module.weight.copy_(uniform(0.5, 1.5))
        module.bias.copy_(0.1 * torch.randn(n, generator=generator))
        module.running_mean.copy_(0.1 * torch.randn(n, generator=generator))
        module.running_var.copy_(uniform(0.5, 2.0))
    head = model.rpn.head
    head.cls_logits.bias.fill_(-math.log((1 - prior_prob) / prior_prob))
    head.proposal_margin_pred.bias.fill_(
        math.log(-math.log(0.5) / prior_margin ** 2))


def reference_optimizer(model: EmbedMask, base_lr: float, momentum: float,
                        weight_decay: float, bias_lr_factor=2.0,
                        weight_decay_bias=0.0, warmup_factor=1 / 3,
                        warmup_iters=500, milestones=(60000, 80000), gamma=0.1):
  """(SGD, scheduler) as fcos_core's make_optimizer / WarmupMultiStepLR
  (constant warmup). Call scheduler.step() after optimizer.step(), as the
  reference trainer does: update t (from 0) runs at the rate of epoch t."""
  groups = []
  for key, value in model.named_parameters():
    if not value.requires_grad:
      continue
    is_bias = 'bias' in key
    groups.append({'params': [value],
                   'lr': base_lr * (bias_lr_factor if is_bias else 1.0),
                   'weight_decay': weight_decay_bias if is_bias
                                   else weight_decay})
  optimizer = torch.optim.SGD(groups, base_lr, momentum=momentum)

  def factor(epoch: int) -> float:
    warmup = warmup_factor if epoch < warmup_iters else 1.0
    return warmup * gamma ** sum(epoch >= m for m in milestones)
  return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, factor)
