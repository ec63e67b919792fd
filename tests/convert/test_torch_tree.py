"""Node: the file's objects with their paths, in both torchfile table forms."""

import numpy as np
import pytest
import torchfile

from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.t7_file import load_t7
from deepmask_jax.convert.torch_tree import Node, describe_tree
from deepmask_jax.testing.t7_writer import Storage, TorchObject, write_t7


def _sequential_file(tmp_path):
  conv = TorchObject('cudnn.SpatialConvolution', {
      'nInputPlane': 3, 'nOutputPlane': 2, 'kW': 1, 'kH': 1,
      'weight': np.zeros((2, 3, 1, 1), np.float32)})
  view = TorchObject('nn.View', {'size': Storage(np.array([4, 2], np.int64))})
  path = tmp_path / 'sequential.t7'
  write_t7(path, TorchObject('nn.Sequential', {'modules': [conv, view]}))
  return str(path)


@pytest.mark.parametrize('loader', ['strict', 'torchfile_lists'])
def test_children_paths_and_fields_in_both_table_forms(tmp_path, loader):
  path = _sequential_file(tmp_path)
  obj = load_t7(path) if loader == 'strict' else torchfile.load(path)
  root = Node(obj, 'model')
  conv, view = root.children()
  assert root.typename == 'nn.Sequential'  # bytes in the file, str here.
  assert conv.path == 'model.modules[1]' and view.path == 'model.modules[2]'
  assert conv.integer('nOutputPlane') == 2
  assert conv.tensor('weight').shape == (2, 3, 1, 1)
  assert view.numbers('size') == (4, 2)


def test_errors_name_path_and_type(tmp_path):
  conv = Node(load_t7(_sequential_file(tmp_path)), 'model').children()[0]
  with pytest.raises(ConversionError,
                     match=r"^model\.modules\[1\] \(cudnn\.SpatialConvolution\): "
                     "has no tensor 'bias'$"):
    conv.tensor('bias')


def test_describe_tree_shows_types_and_shapes(tmp_path):
  lines = describe_tree(Node(load_t7(_sequential_file(tmp_path)), 'model'))
  assert lines[0] == 'model: nn.Sequential'
  assert lines[1].startswith('  modules[1]: cudnn.SpatialConvolution')
  assert 'weight[2, 3, 1, 1]' in lines[1]
