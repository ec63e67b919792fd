"""DeepMask and SharpMask in PyTorch, for experiments/bench_vs_pytorch.py only.

The same networks as deepmask_jax/models/{resnet,deepmask,sharpmask}.py, built
from our variables tree ({'params', 'constants'}, numpy) so both frameworks
compute with identical weights. PyTorch is a benchmark-only dependency: the
package and its tests never import this file.

Layouts: activations NCHW (PyTorch's native layout; the JAX side is NHWC),
conv weights OIHW (ours are HWIO), linear weights [out, in] (ours [in, out]).
"""

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

# Same table as deepmask_jax/families/deepmask/refinement.py (kept in sync by the
# equality check of bench_vs_pytorch.py): skip source, border crop per patch.
SKIP_SOURCES = (('layer3', 0), ('layer2', 2), ('layer1', 4), ('conv1', 8))


def symmetric_pad(x: torch.Tensor, pad: int) -> torch.Tensor:
  """Torch7 `SpatialSymmetricPadding` (`cba|abcd`) of H and W of NCHW x.

  PyTorch has no such mode: 'reflect' is `dcb|abcd`; 'replicate' agrees only
  for pad 1, the 3x3 convs, and is used there because it is one fused op.
  """
  if pad == 0:
    return x
  if pad == 1:
    return F.pad(x, (1, 1, 1, 1), mode='replicate')
  x = torch.cat([x[:, :, :pad].flip(2), x, x[:, :, -pad:].flip(2)], dim=2)
  return torch.cat([x[..., :pad].flip(3), x, x[..., -pad:].flip(3)], dim=3)


def _tensor(array) -> torch.Tensor:
  return torch.from_numpy(np.ascontiguousarray(np.asarray(array, np.float32)))


class PaddedConv(nn.Module):
  """Symmetric padding then a VALID conv; built from {'conv': {kernel, bias}}."""

  def __init__(self, params: dict, stride: int = 1):
    super().__init__()
    kernel = params['conv']['kernel']  # HWIO
    self.pad = (kernel.shape[0] - 1) // 2
    self.conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0],
                          stride)
    self.conv.weight.data = _tensor(np.transpose(kernel, (3, 2, 0, 1)))
    self.conv.bias.data = _tensor(params['conv']['bias'])

  def forward(self, x):
    return self.conv(symmetric_pad(x, self.pad))


def _conv1x1(params: dict) -> nn.Conv2d:
  """An nn.Conv (HWIO kernel) or nn.Dense ([in, out]) as a VALID Conv2d."""
  kernel = params['kernel']
  if kernel.ndim == 2:
    kernel = kernel[None, None]
  conv = nn.Conv2d(kernel.shape[2], kernel.shape[3], kernel.shape[0])
  conv.weight.data = _tensor(np.transpose(kernel, (3, 2, 0, 1)))
  conv.bias.data = _tensor(params['bias'])
  return conv


def _linear(params: dict) -> nn.Linear:
  kernel = params['kernel']
  linear = nn.Linear(kernel.shape[0], kernel.shape[1])
  linear.weight.data = _tensor(kernel.T)
  linear.bias.data = _tensor(params['bias'])
  return linear


class FrozenAffine(nn.Module):
  """x * scale + bias per channel; buffers, so no optimiser sees them."""

  def __init__(self, constants: dict):
    super().__init__()
    self.register_buffer('scale', _tensor(constants['scale'])[:, None, None])
    self.register_buffer('bias', _tensor(constants['bias'])[:, None, None])

  def forward(self, x):
    return x * self.scale + self.bias


class Bottleneck(nn.Module):
  """relu(affine(branch(x) + shortcut(x))), stride on the 3x3 conv."""

  def __init__(self, params: dict, constants: dict, stride: int):
    super().__init__()
    self.conv1 = PaddedConv(params['conv1'])
    self.affine1 = FrozenAffine(constants['affine1'])
    self.conv2 = PaddedConv(params['conv2'], stride)
    self.affine2 = FrozenAffine(constants['affine2'])
    self.conv3 = PaddedConv(params['conv3'])
    self.projection = (PaddedConv(params['projection'], stride)
                       if 'projection' in params else None)
    self.affine_out = FrozenAffine(constants['affine_out'])

  def forward(self, x):
    y = F.relu(self.affine1(self.conv1(x)))
    y = F.relu(self.affine2(self.conv2(y)))
    y = self.conv3(y)
    shortcut = x if self.projection is None else self.projection(x)
    return F.relu(self.affine_out(y + shortcut))


class Trunk(nn.Module):
  """conv1 7x7/2, affine, relu, maxpool 3x3/2, then layer1..layerN."""

  def __init__(self, params: dict, constants: dict):
    super().__init__()
    self.conv1 = PaddedConv(params['conv1'], 2)
    self.affine1 = FrozenAffine(constants['affine1'])
    self.layers = nn.ModuleList()
    layer = 1
    while f'layer{layer}_0' in params:
      blocks, block = [], 0
      while (name := f'layer{layer}_{block}') in params:
        stride = 2 if (layer > 1 and block == 0) else 1
        blocks.append(Bottleneck(params[name], constants[name], stride))
        block += 1
      self.layers.append(nn.Sequential(*blocks))
      layer += 1

  def forward(self, x) -> dict:
    x = F.relu(self.affine1(self.conv1(x)))
    features = {'conv1': x}
    x = F.max_pool2d(x, 3, 2, padding=1)
    for index, layer in enumerate(self.layers):
      x = layer(x)
      features[f'layer{index + 1}'] = x
    return features


def _crop(x, pixels: int):
  return x if pixels == 0 else x[:, :, pixels:-pixels, pixels:-pixels]


class DeepMask(nn.Module):
  """Patch form `forward` and fully convolutional `dense`, as the JAX model."""

  def __init__(self, params: dict, constants: dict, mask_size: int,
               label_size: int):
    super().__init__()
    self.trunk = Trunk(params['trunk'], constants['trunk'])
    self.reduce = _conv1x1(params['reduce'])
    self.embed = _conv1x1(params['embed'])
    self.mask_head = _conv1x1(params['mask_head'])
    self.score_hidden_layer = _conv1x1(params['score_hidden_layer'])
    self.score_out = _conv1x1(params['score_out'])
    self.mask_size, self.label_size = mask_size, label_size

  def encode(self, images, crop: bool = True):
    """images [B, 3, H, W] -> (trunk features, embedding [B, 512, H', W'])."""
    features = self.trunk(images)
    if crop:
      features = dict(features, layer3=_crop(features['layer3'], 1))
    return features, self.embed(F.relu(self.reduce(features['layer3'])))

  def mask_logits(self, embedding):
    """[B, 512, H', W'] -> [B, H', W', oSz, oSz]."""
    flat = self.mask_head(embedding).permute(0, 2, 3, 1)
    return flat.reshape(flat.shape[:3] + (self.mask_size, self.mask_size))

  def score_logits(self, embedding):
    """[B, 512, H', W'] -> [B, H', W'] (eval: dropout is the identity)."""
    hidden = F.threshold(self.score_hidden_layer(embedding), 0.0, 1e-6)
    return self.score_out(hidden)[:, 0]

  def forward(self, images):
    """Patches [B, 3, wSz, wSz] -> {'mask': [B, gSz, gSz], 'score': [B]}."""
    _, embedding = self.encode(images)
    mask = self.mask_logits(embedding)[:, 0, 0]
    if self.label_size != self.mask_size:
      mask = F.interpolate(mask[:, None], size=(self.label_size,) * 2,
                           mode='bilinear', align_corners=True)[:, 0]
    return {'mask': mask, 'score': self.score_logits(embedding)[:, 0, 0]}

  def dense(self, images) -> dict:
    _, embedding = self.encode(images, crop=False)
    return {'score': self.score_logits(embedding),
            'mask': self.mask_logits(embedding), 'embedding': embedding}


class Refinement(nn.Module):
  """SharpMask's top-down path (neths, netvs, final conv)."""

  def __init__(self, params: dict, feature_size: int):
    super().__init__()
    self.encoding = _linear(params['encoding'])
    self.km = params['encoding']['kernel'].shape[1] // feature_size ** 2
    self.feature_size = feature_size
    self.horizontals = nn.ModuleList(
        nn.ModuleList(PaddedConv(params[f'horizontals_{i}'][f'conv{j}'])
                      for j in (1, 2, 3)) for i in range(len(SKIP_SOURCES)))
    self.verticals = nn.ModuleList(
        nn.ModuleList(PaddedConv(params[f'verticals_{i}'][f'conv{j}'])
                      for j in (1, 2)) for i in range(len(SKIP_SOURCES)))
    self.final = PaddedConv(params['final'])

  def horizontal(self, features: dict, crop: bool = True) -> list:
    out = []
    for convs, (name, pixels) in zip(self.horizontals, SKIP_SOURCES):
      x = _crop(features[name], pixels if crop else 0)
      x = F.relu(convs[0](x))
      out.append(convs[2](F.relu(convs[1](x))))
    return out

  def refine(self, embedding, horizontals: list):
    """[B, 512] and four skip maps [B, C_i, S_i, S_i] -> [B, iSz, iSz] logits."""
    fsz = self.feature_size
    m = self.encoding(embedding).reshape(-1, self.km, fsz, fsz)
    for convs, h in zip(self.verticals, horizontals):
      v = convs[1](F.relu(convs[0](m)))
      m = F.interpolate(F.relu(h + v), scale_factor=2, mode='nearest')
    return self.final(m)[:, 0]


class SharpMask(nn.Module):
  """DeepMask plus Refinement; patch `forward` and whole-map `dense`."""

  def __init__(self, deepmask: DeepMask, refinement: Refinement):
    super().__init__()
    self.deepmask, self.refinement = deepmask, refinement

  def forward(self, images):
    features, embedding = self.deepmask.encode(images)
    return {'mask': self.refinement.refine(
                embedding[:, :, 0, 0],
                self.refinement.horizontal(features, crop=True)),
            'score': self.deepmask.score_logits(embedding)[:, 0, 0]}

  def dense(self, images) -> dict:
    features, embedding = self.deepmask.encode(images, crop=False)
    return {'score': self.deepmask.score_logits(embedding),
            'mask': self.deepmask.mask_logits(embedding),
            'embedding': embedding,
            'horizontals': self.refinement.horizontal(features, crop=False)}


def build_deepmask(variables: dict, mask_size: int, label_size: int) -> DeepMask:
  """A DeepMask from a DeepMask variables tree (or a SharpMask's 'deepmask')."""
  params, constants = variables['params'], variables['constants']
  if 'deepmask' in params:
    params, constants = params['deepmask'], constants['deepmask']
  return DeepMask(params, constants, mask_size, label_size)


def build_sharpmask(variables: dict, mask_size: int,
                    feature_size: int) -> SharpMask:
  """A SharpMask from a SharpMask variables tree."""
  deepmask = build_deepmask(variables, mask_size, mask_size)
  refinement = Refinement(variables['params']['refinement'], feature_size)
  return SharpMask(deepmask, refinement)
