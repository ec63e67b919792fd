"""Maps an `nn.SharpMask` to our SharpMask: {'deepmask': ..., 'refinement': ...}.

The bottom-up part (trunk, scoreBranch, maskBranchDM) maps as in DeepMask.
The top-down part is read from `refs`, the chain `SharpMask:forward` runs:

    refs[0] = netvs[0] = Sequential{Linear(512, fSz^2*km), View(b, km, fSz, fSz)}
    refs[i] = Sequential{ParallelTable{neths[i], netvs[i]}, CAddTable, ReLU,
                         SpatialUpSamplingNearest(2)}        i = 1..4
    refs[4] adds SpatialSymmetricPadding(1), conv3x3 (km/16 -> 1), View.

`neths`/`netvs` are the same objects as the ParallelTable's branches; that is
checked. The Linear keeps Torch's output order (C, H, W): our Refinement
reshapes its output the same way. The skip features come from the trunk
modules `skpos` = {8, 6, 5, 3}: cropped layer3, layer2, layer1, conv1.
"""

import dataclasses

from deepmask_jax.convert import deepmask as deepmask_mapper
from deepmask_jax.convert.torch_layers import Chain, crop_pixels, read_linear
from deepmask_jax.convert.torch_tree import Node
from deepmask_jax.families.deepmask.refinement import NUM_REFINEMENTS, SKIP_SOURCES


@dataclasses.dataclass
class SharpMaskWeights:
  params: dict  # {'deepmask': ..., 'refinement': ...}
  constants: dict  # {'deepmask': {'trunk': ...}}
  deepmask: deepmask_mapper.DeepMaskWeights
  km: int


def _conv3x3(chain: Chain, in_channels: int, out_channels: int) -> dict:
  """A symmetric-padded 3x3/1 conv with the given channels -> {'conv': ...}."""
  conv = chain.conv()
  if conv.size != 3 or conv.stride != 1 or conv.padding != 'symmetric':
    raise conv.node.error(f'a {conv.size}x{conv.size}/{conv.stride} conv with '
                          f'{conv.padding} padding where SharpMask has a 3x3/1 '
                          'conv after SpatialSymmetricPadding(1)')
  if (conv.in_channels, conv.out_channels) != (in_channels, out_channels):
    raise conv.node.error(f'maps {conv.in_channels}->{conv.out_channels} '
                          f'channels where our SharpMask has '
                          f'{in_channels}->{out_channels}')
  return {'conv': conv.variables()}


def _skip_channels(weights: deepmask_mapper.DeepMaskWeights) -> dict:
  trunk = weights.trunk
  return {'conv1': trunk.stem_width,
          **{f'layer{i + 1}': w * trunk.expansion
             for i, w in enumerate(trunk.widths)}}


def _check_skip_positions(model: Node, weights) -> None:
  """`skpos` must name the trunk modules our SharpMask reads its skips after."""
  positions = {index: name for index, name in
               weights.trunk.feature_modules.items() if name != 'layer3'}
  positions[weights.crop_module] = 'layer3'  # Skip 1 is the cropped layer3.
  expected = [name for name, _, _ in SKIP_SOURCES]
  skpos = list(model.numbers('skpos'))
  if [positions.get(p) for p in skpos] != expected:
    index_of = {name: index for index, name in positions.items()}
    raise model.error(f'skpos {skpos}: our SharpMask reads its skip features '
                      f'{expected} after trunk modules '
                      f'{[index_of.get(name) for name in expected]}')


def _encoding(ref: Node, embedding: int, fsz: int, km: int) -> dict:
  """refs[0]: Linear(512, fSz^2*km) + View(b, km, fSz, fSz) -> Dense."""
  chain = Chain.of(ref)
  linear = chain.take('linear')
  view = chain.take('view')
  chain.finish()
  weight, bias = read_linear(linear)
  if weight.shape != (fsz * fsz * km, embedding):
    raise linear.error(f'weight {list(weight.shape)}, expected '
                       f'[{fsz * fsz * km}, {embedding}] (fSz {fsz}, km {km})')
  if view.numbers('size')[-3:] != (km, fsz, fsz):
    raise view.error(f"View{list(view.numbers('size'))} does not end with "
                     f'({km}, {fsz}, {fsz})')
  return {'kernel': weight.T.astype('float32'), 'bias': bias.astype('float32')}


def _horizontal(net: Node, index: int, in_channels: int, channels: int):
  """neths[i]: [crop] conv 3x3 ReLU conv ReLU conv -> Horizontal variables."""
  _, hidden, crop = SKIP_SOURCES[index]
  chain = Chain.of(net)
  crop_node = chain.optional('crop')
  found = crop_pixels(crop_node) if crop_node is not None else 0
  if found != crop:
    raise (crop_node or net).error(f'crops {found} pixels; skip {index + 1} '
                                   f'of our SharpMask crops {crop}')
  variables = {'conv1': _conv3x3(chain, in_channels, hidden)}
  chain.threshold()
  variables['conv2'] = _conv3x3(chain, hidden, channels)
  chain.threshold()
  variables['conv3'] = _conv3x3(chain, channels, channels // 2)
  chain.finish()
  return variables


def _vertical(net: Node, channels: int) -> dict:
  """netvs[i]: conv 3x3 n->n ReLU conv n->n/2 -> Vertical variables."""
  chain = Chain.of(net)
  variables = {'conv1': _conv3x3(chain, channels, channels)}
  chain.threshold()
  variables['conv2'] = _conv3x3(chain, channels, channels // 2)
  chain.finish()
  return variables


def _refinement(ref: Node, index: int, in_channels: int, channels: int):
  """refs[i] -> (neth, netv Nodes, Horizontal, Vertical, final conv or None)."""
  chain = Chain.of(ref)
  parallel = chain.take('parallel')
  branches = parallel.children()
  if len(branches) != 2:
    raise parallel.error(f'{len(branches)} branches, expected {{neth, netv}}')
  neth, netv = branches
  horizontal = _horizontal(neth, index, in_channels, channels)
  vertical = _vertical(netv, channels)
  chain.take('add')
  chain.threshold()
  upsample = chain.take('upsample')
  if upsample.integer('scale_factor', 2) != 2:
    raise upsample.error('SharpMask upsamples by 2')
  final = None
  if index == NUM_REFINEMENTS - 1:
    final = _conv3x3(chain, channels // 2, 1)
    chain.take('view')
  chain.finish()
  return neth, netv, horizontal, vertical, final


def _check_aliases(model: Node, refs: list, branches: list) -> None:
  """neths[i] / netvs[i] must be the nets refs[i] runs (netvs[0] is refs[0])."""
  for name, first, expected in (
      ('neths', 1, [neth for neth, _ in branches]),
      ('netvs', 0, [refs[0]] + [netv for _, netv in branches])):
    if not model.has(name):
      continue
    nets = model.children(name, first)
    if len(nets) != len(expected) or any(
        net.obj is not want.obj for net, want in zip(nets, expected)):
      raise model.error(f'{name} differ from the nets inside refs, which '
                        'SharpMask:forward runs; the file is inconsistent')


def map_sharpmask(model: Node) -> SharpMaskWeights:
  """Maps an `nn.SharpMask` object."""
  dm = deepmask_mapper.map_deepmask(model, mask_branch='maskBranchDM')
  km = model.integer('km')
  if model.integer('ks', km) != km:
    raise model.error(f"ks = {model.integer('ks')} differs from km = {km}; "
                      'our SharpMask ties them')
  _check_skip_positions(model, dm)
  refs = model.children('refs', first=0)
  if len(refs) != NUM_REFINEMENTS + 1:
    raise model.error(f'{len(refs)} refs, expected {NUM_REFINEMENTS + 1}')
  params = {'encoding': _encoding(refs[0], dm.embedding, dm.feature_size, km)}
  skip_channels = _skip_channels(dm)
  branches = []
  for i, ref in enumerate(refs[1:]):
    channels = km // 2 ** i
    neth, netv, horizontal, vertical, final = _refinement(
        ref, i, skip_channels[SKIP_SOURCES[i][0]], channels)
    params[f'horizontals_{i}'], params[f'verticals_{i}'] = horizontal, vertical
    branches.append((neth, netv))
  params['final'] = final
  _check_aliases(model, refs, branches)
  return SharpMaskWeights(
      params={'deepmask': dm.params, 'refinement': params},
      constants={'deepmask': dm.constants}, deepmask=dm, km=km)
