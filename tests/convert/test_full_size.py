"""A full-size ResNet-50 tree (resnet-50.t7 layout): conversion time and outputs."""

import time

import jax
import numpy as np
import pytest

from deepmask_jax.convert import convert_t7
from deepmask_jax.models.store import load_model
from deepmask_jax.testing import torch_trees as trees
from deepmask_jax.testing import torch_reference as reference
from deepmask_jax.testing.compare import trunk_errors
from deepmask_jax.testing.t7_writer import write_t7

RESNET50 = trees.Geometry(stem=64, widths=(64, 128, 256), depths=(3, 4, 6))
# Reference section 1.3: conv weights through layer3 plus their biases, and
# layer4's: 1024x512 + 9x512x512 + 512x2048 + 1024x2048 (projection) in its
# first block, 2048x512 + 9x512x512 + 512x2048 in the other two.
TRUNK_PARAMETERS = 8_512_704 + 15_296 + 14_942_208 + 11_264
TIME_LIMIT_S = 60


@pytest.fixture(scope='module')
def resnet50(tmp_path_factory):
  """(tree, path) of a released-layout ResNet-50 with 1000 classes."""
  tree = trees.resnet_file(RESNET50, trees.TrunkStyle(), seed=11,
                           layer4=(512, 3), classes=1000)
  path = tmp_path_factory.mktemp('full') / 'resnet-50.t7'
  write_t7(path, tree, cuda=True)
  return tree, str(path)


def test_converts_within_the_time_limit(resnet50, tmp_path):
  _, path = resnet50
  start = time.perf_counter()
  conversion = convert_t7(path, str(tmp_path / 'resnet50'))
  seconds = time.perf_counter() - start
  print(f'full-size ResNet-50 conversion: {seconds:.2f} s')
  assert seconds < TIME_LIMIT_S
  assert '53 convs' in conversion.notes[0]
  variables, config = load_model(str(tmp_path / 'resnet50'))
  count = sum(np.asarray(a).size for a in jax.tree.leaves(variables['params']))
  assert count == TRUNK_PARAMETERS
  assert (config.trunk.widths, config.trunk.depths, config.trunk.padding) == (
      (64, 128, 256, 512), (3, 4, 6, 3), 'zero')


def test_full_size_trunk_matches_torch(resnet50, tmp_path):
  tree, path = resnet50
  convert_t7(path, str(tmp_path / 'resnet50'))
  variables, config = load_model(str(tmp_path / 'resnet50'))
  images = np.random.default_rng(0).normal(size=(1, 3, 64, 64))
  expected = reference.module_outputs(tree, images, 8)
  errors = trunk_errors(variables, config, images, expected)
  print(f'full-size trunk relative errors: {errors}')
  assert max(errors.values()) < 1e-4
