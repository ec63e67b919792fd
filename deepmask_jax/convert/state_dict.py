"""Named tensors (a PyTorch state dict or Detectron blobs) -> our ResNet trunk.

Both name the same MSRA ResNet (maskrcnn-benchmark's `ResNet` with
FrozenBatchNorm2d, `STRIDE_IN_1X1`; Detectron's caffe2 blobs with
AffineChannel), module by module:

    maskrcnn-benchmark            caffe2 (Detectron .pkl)
    stem.conv1.weight             conv1_w
    stem.bn1.*                    res_conv1_bn_{s,b}
    layer{k}.{i}.conv1/bn1        res{k+1}_{i}_branch2a_w / _bn_{s,b}
    layer{k}.{i}.conv2/bn2        ..._branch2b_...
    layer{k}.{i}.conv3/bn3        ..._branch2c_...
    layer{k}.{i}.downsample.0/1   ..._branch1_w / _bn_{s,b}

FrozenBatchNorm2d computes x * w / sqrt(var) + (b - mean * w / sqrt(var))
with no eps; AffineChannel x * s + b. Each becomes a FrozenAffine (constants,
as frozen as the file's) right after its conv, the trunk layout
norm='frozen_per_conv' (models/resnet.py): bn1..bn3 -> affine1..affine3,
the projection's norm -> affine_projection. None is folded into a conv:
that would compute the same function but train differently (SGD moves a
folded kernel s W by 1/s^2 times the reference's step). Convs have no bias
in the file: ours are zero (and never trained). Kernels go from OIHW to HWIO.

Every tensor is taken by name; `TensorSource.check_all_used` then fails on
any that nothing took.
"""

import numpy as np

from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.trunk_variables import TrunkVariables


class TensorSource:
  """Named float arrays, handed out once each, with shape checks."""

  def __init__(self, tensors: dict, what: str):
    self.tensors = tensors
    self.what = what
    self.used = set()

  def has(self, key: str) -> bool:
    return key in self.tensors

  def take(self, key: str, shape: tuple = None) -> np.ndarray:
    """tensors[key] as float64; `shape` entries of None match anything."""
    if key not in self.tensors:
      raise ConversionError(f'{self.what} has no {key}')
    value = self.tensors[key]
    if not isinstance(value, np.ndarray) or value.dtype.kind not in 'fiu':
      raise ConversionError(f'{self.what}: {key} is a '
                            f'{type(value).__name__} of '
                            f'{getattr(value, "dtype", "no dtype")}, not a '
                            'numeric tensor')
    if shape is not None and (len(shape) != value.ndim or any(
        s is not None and s != v for s, v in zip(shape, value.shape))):
      want = tuple('*' if s is None else s for s in shape)
      raise ConversionError(f'{self.what}: {key} has shape {value.shape}, '
                            f'expected {want}')
    self.used.add(key)
    return value.astype(np.float64)

  def check_all_used(self) -> None:
    unused = sorted(set(self.tensors) - self.used)
    if unused:
      more = f' (and {len(unused) - 1} more)' if len(unused) > 1 else ''
      raise ConversionError(f'{self.what}: unexpected key {unused[0]}{more}; '
                            'nothing in our model takes it')


def hwio(weight: np.ndarray) -> np.ndarray:
  """A PyTorch OIHW kernel as HWIO."""
  return weight.transpose(2, 3, 1, 0)


def conv_variables(kernel_oihw, bias=None) -> dict:
  bias = np.zeros(kernel_oihw.shape[0]) if bias is None else bias
  return {'kernel': hwio(kernel_oihw).astype(np.float32),
          'bias': bias.astype(np.float32)}


def affine_constants(scale, bias) -> dict:
  return {'scale': scale.astype(np.float32), 'bias': bias.astype(np.float32)}


class MaskrcnnTrunk:
  """maskrcnn-benchmark names under `prefix` ('backbone.body.')."""

  def __init__(self, source: TensorSource, prefix: str):
    self.source, self.prefix = source, prefix

  def has(self, module: str) -> bool:
    return self.source.has(f'{self.prefix}{module}.weight')

  def conv(self, module: str, shape: tuple) -> np.ndarray:
    return self.source.take(f'{self.prefix}{module}.weight', shape)

  def affine(self, module: str, channels: int):
    """FrozenBatchNorm2d -> (scale, bias); no eps, as maskrcnn-benchmark."""
    take = lambda name: self.source.take(f'{self.prefix}{module}.{name}',
                                         (channels,))
    weight, bias = take('weight'), take('bias')
    mean, var = take('running_mean'), take('running_var')
    if np.any(var <= 0):
      raise ConversionError(f'{self.source.what}: {self.prefix}{module}.'
                            'running_var has values <= 0')
    scale = weight / np.sqrt(var)
    return scale, bias - mean * scale


class Caffe2Trunk:
  """Detectron's caffe2 blob names (see the module docstring)."""

  def __init__(self, source: TensorSource):
    self.source = source

  @staticmethod
  def _blob(module: str) -> str:
    if module.startswith('stem.'):
      return {'stem.conv1': 'conv1', 'stem.bn1': 'res_conv1_bn'}[module]
    layer, block, name = module.split('.', 2)
    stage = f'res{int(layer[len("layer"):]) + 1}_{block}'
    branch = {'conv1': 'branch2a', 'bn1': 'branch2a_bn', 'conv2': 'branch2b',
              'bn2': 'branch2b_bn', 'conv3': 'branch2c', 'bn3': 'branch2c_bn',
              'downsample.0': 'branch1', 'downsample.1': 'branch1_bn'}[name]
    return f'{stage}_{branch}'

  def has(self, module: str) -> bool:
    return self.source.has(f'{self._blob(module)}_w')

  def conv(self, module: str, shape: tuple) -> np.ndarray:
    return self.source.take(f'{self._blob(module)}_w', shape)

  def affine(self, module: str, channels: int):
    blob = self._blob(module)
    return (self.source.take(f'{blob}_s', (channels,)),
            self.source.take(f'{blob}_b', (channels,)))


class Trunk(TrunkVariables):
  """An MSRA trunk: stride in the 1x1 conv, a frozen affine after every conv
  (norm 'frozen_per_conv')."""

  def note(self) -> str:
    return f'trunk: {self.geometry()}, stride in the 1x1 conv'


def _block(names, module: str, in_channels: int, stride: int):
  """One bottleneck -> (params, constants, width, out_channels)."""
  conv1 = names.conv(f'{module}.conv1', (None, in_channels, 1, 1))
  width = conv1.shape[0]
  conv2 = names.conv(f'{module}.conv2', (width, width, 3, 3))
  conv3 = names.conv(f'{module}.conv3', (None, width, 1, 1))
  out_channels = conv3.shape[0]
  params = {'conv1': {'conv': conv_variables(conv1)},
            'conv2': {'conv': conv_variables(conv2)},
            'conv3': {'conv': conv_variables(conv3)}}
  constants = {
      'affine1': affine_constants(*names.affine(f'{module}.bn1', width)),
      'affine2': affine_constants(*names.affine(f'{module}.bn2', width)),
      'affine3': affine_constants(*names.affine(f'{module}.bn3', out_channels))}
  needs_projection = in_channels != out_channels or stride != 1
  if names.has(f'{module}.downsample.0') != needs_projection:
    raise ConversionError(
        f'{names.source.what}: {module} ' + (
            'has no downsample, but its input and output differ'
            if needs_projection else 'has a downsample our block would not '
            'use (same channels, stride 1)'))
  if needs_projection:
    projection = names.conv(f'{module}.downsample.0',
                            (out_channels, in_channels, 1, 1))
    params['projection'] = {'conv': conv_variables(projection)}
    constants['affine_projection'] = affine_constants(
        *names.affine(f'{module}.downsample.1', out_channels))
  return params, constants, width, out_channels


def map_msra_trunk(names, num_layers: int = 4) -> Trunk:
  """The stem and layer1..layer`num_layers` under `names` (MaskrcnnTrunk or
  Caffe2Trunk); the depth of each layer is read from the names."""
  stem = names.conv('stem.conv1', (None, 3, 7, 7))
  stem_width = stem.shape[0]
  params = {'conv1': {'conv': conv_variables(stem)}}
  constants = {'affine1': affine_constants(*names.affine('stem.bn1',
                                                         stem_width))}
  in_channels, widths, depths, expansions = stem_width, [], [], set()
  for layer in range(1, num_layers + 1):
    if not names.has(f'layer{layer}.0.conv1'):
      raise ConversionError(f'{names.source.what}: no layer{layer} (stage '
                            f'res{layer + 1}); our trunk needs {num_layers}')
    block = 0
    while names.has(f'layer{layer}.{block}.conv1'):
      stride = 2 if layer > 1 and block == 0 else 1
      block_params, block_constants, width, in_channels = _block(
          names, f'layer{layer}.{block}', in_channels, stride)
      if block == 0:
        widths.append(width)
      elif width != widths[-1]:
        raise ConversionError(f'{names.source.what}: layer{layer}.{block} '
                              f'is {width} wide, block 0 is {widths[-1]}')
      expansions.add(in_channels / width)
      params[f'layer{layer}_{block}'] = block_params
      constants[f'layer{layer}_{block}'] = block_constants
      block += 1
    depths.append(block)
  if len(expansions) != 1:
    raise ConversionError(f'{names.source.what}: the bottlenecks expand by '
                          f'{sorted(expansions)}; our trunk uses one factor')
  return Trunk(params, constants, stem_width, tuple(widths), tuple(depths),
               int(expansions.pop()))
