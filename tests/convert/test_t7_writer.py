"""The test-side Torch7 writer, checked against torchfile (the real reader)."""

import numpy as np
import torchfile

from deepmask_jax.testing.t7_writer import (LuaFunction, Storage, Tensor,
                                             TorchObject, write_t7)


def test_values_tables_and_shared_objects_read_back(tmp_path):
  shared = TorchObject('nn.Identity', {'train': False})
  value = {'number': 2.5, 'integer': 3, 'text': 'bilinear', 'flag': True,
           'list': [shared, shared], 'zero_based': {0: 'a', 1: 'b'}}
  path = tmp_path / 'values.t7'
  write_t7(path, value)
  read = torchfile.load(str(path), use_list_heuristic=False)
  assert read[b'number'] == 2.5 and read[b'integer'] == 3
  assert read[b'text'] == b'bilinear' and read[b'flag'] is True
  assert read[b'list'][1] is read[b'list'][2]  # One object, two references.
  assert read[b'list'][1].torch_typename() == b'nn.Identity'
  assert read[b'zero_based'][0] == b'a'


def test_tensors_views_storages_and_functions_read_back(tmp_path):
  storage = np.arange(20, dtype=np.float32)
  view = Tensor(storage, (4, 3), (1, 4), offset=2, cuda=True)
  value = {'view': view, 'dense': np.arange(6.0).reshape(2, 3),
           'size': Storage(np.array([2, 12800], np.int64)),
           'function': LuaFunction(b'\x1bLua bytecode')}
  path = tmp_path / 'tensors.t7'
  write_t7(path, value)
  read = torchfile.load(str(path), use_list_heuristic=False)
  np.testing.assert_array_equal(read[b'view'], view.array())
  assert read[b'view'].dtype == np.float32  # torch.CudaTensor -> float32.
  np.testing.assert_array_equal(read[b'dense'], np.arange(6.0).reshape(2, 3))
  np.testing.assert_array_equal(read[b'size'], [2, 12800])
  assert read[b'function'].dumped == b'\x1bLua bytecode'
