"""Strict reading of .t7 files: views copied, bad files refused in one line."""

import numpy as np
import pytest

from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.t7_file import load_t7
from deepmask_jax.testing.t7_writer import (LuaFunction, Tensor, TorchObject,
                                             write_t7)


def test_views_become_contiguous_copies(tmp_path):
  storage = np.arange(30, dtype=np.float32)
  view = Tensor(storage, (2, 3, 4), (1, 2, 6), offset=5, cuda=True)
  path = tmp_path / 'view.t7'
  write_t7(path, TorchObject('nn.Linear', {'weight': view, 'bias': view}))
  weight = load_t7(str(path))[b'weight']
  np.testing.assert_array_equal(weight, view.array())
  assert weight.flags['C_CONTIGUOUS'] and weight.flags['OWNDATA']


def test_lua_arrays_of_tensors_load(tmp_path):
  # torchfile's list heuristic fails on such arrays under numpy 2.
  arrays = [np.full((2,), i, np.float32) for i in range(3)]
  path = tmp_path / 'array.t7'
  write_t7(path, TorchObject('nn.ConcatTable', {'output': arrays}))
  output = load_t7(str(path))[b'output']
  assert [float(output[i][0]) for i in (1, 2, 3)] == [0.0, 1.0, 2.0]


def test_lua_function_is_kept_as_inert_bytes(tmp_path):
  path = tmp_path / 'function.t7'
  write_t7(path, {'hook': LuaFunction(b'os.execute("touch pwned")')})
  hook = load_t7(str(path))[b'hook']
  assert hook.dumped == b'os.execute("touch pwned")' and not callable(hook)


def _large_file(tmp_path):
  path = tmp_path / 'full.t7'
  write_t7(path, TorchObject('nn.Linear', {
      'weight': np.ones((64, 64), np.float32), 'bias': np.ones(64, np.float32)}))
  return path


@pytest.mark.parametrize('keep', [0.2, 0.6, 0.999])
def test_truncated_file_is_refused(tmp_path, keep):
  path = _large_file(tmp_path)
  data = path.read_bytes()
  path.write_bytes(data[:int(len(data) * keep)])
  with pytest.raises(ConversionError, match='truncated') as error:
    load_t7(str(path))
  assert str(path) in str(error.value) and '\n' not in str(error.value)


@pytest.mark.parametrize('content', [b'', b'\x89PNG\r\n\x1a\n rest of an image',
                                     b'th> print("not a binary file")'])
def test_non_torch7_file_is_refused(tmp_path, content):
  path = tmp_path / 'not.t7'
  path.write_bytes(content)
  with pytest.raises(ConversionError, match='not a .*Torch7 file'):
    load_t7(str(path))


def test_view_outside_its_storage_is_refused(tmp_path):
  bad_view = Tensor(np.arange(10, dtype=np.float32), (4, 4), (4, 1))
  path = tmp_path / 'bad_view.t7'
  write_t7(path, TorchObject('nn.Linear', {'weight': bad_view}))
  with pytest.raises(ConversionError, match='corrupt tensor view'):
    load_t7(str(path))


def test_missing_file_is_refused(tmp_path):
  with pytest.raises(ConversionError, match='no such file'):
    load_t7(str(tmp_path / 'absent.t7'))
