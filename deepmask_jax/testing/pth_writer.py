"""Writes PyTorch `.pth` files (both containers) and Detectron `.pkl` files
with the standard library only, laid out as torch.save / Detectron write them.

Pickles are written by a pure-Python pickler that emits the globals PyTorch's
own pickles name (`torch._utils._rebuild_tensor_v2`, `torch.FloatStorage`,
`collections.OrderedDict`) and the persistent ids torch.save gives storages:

  zip (torch >= 1.6):   ('storage', torch.FloatStorage, '<n>', 'cpu', numel)
  legacy (torch <= 1.5): the same plus a view field (None)

A `Tensor` is a view (offset, size, stride, in elements) of a `Storage`;
several tensors may share one. `Global` writes any other global (tests of the
refusals use it to name os.system and friends).
"""

import collections
import dataclasses
import io
import pickle
import struct
import zipfile

import numpy as np

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
STORAGE_NAMES = {np.dtype(np.float32): 'FloatStorage',
                 np.dtype(np.float64): 'DoubleStorage',
                 np.dtype(np.float16): 'HalfStorage',
                 np.dtype(np.int64): 'LongStorage'}


@dataclasses.dataclass(frozen=True)
class Global:
  """A pickled reference to `module.name` (no import needed)."""
  module: str
  name: str

  def __call__(self, *args):  # pickle's save_reduce wants a callable.
    raise TypeError(f'{self.module}.{self.name} is only a name here')


@dataclasses.dataclass(eq=False)
class Storage:
  data: np.ndarray  # 1-D.


@dataclasses.dataclass(eq=False)
class Tensor:
  storage: Storage
  offset: int
  size: tuple
  stride: tuple


@dataclasses.dataclass(eq=False)
class Reduce:
  """An object pickled as callable(*args) (the refusal tests' payloads)."""
  callable: Global
  args: tuple


def tensor(array) -> Tensor:
  """A contiguous tensor on its own storage."""
  array = np.ascontiguousarray(array)
  strides = tuple(s // array.itemsize for s in array.strides)
  return Tensor(Storage(array.reshape(-1).copy()), 0, array.shape, strides)


def _tensors_of(obj):
  if isinstance(obj, np.ndarray):
    return tensor(obj)
  if isinstance(obj, dict):
    return type(obj)((k, _tensors_of(v)) for k, v in obj.items())
  return obj


class _Pickler(pickle._Pickler):  # pylint: disable=protected-access
  """Protocol 2, as torch.save writes; `persistent` maps storages to ids."""
  dispatch = dict(pickle._Pickler.dispatch)  # pylint: disable=protected-access

  def __init__(self, file, storage_id):
    super().__init__(file, protocol=2)
    self.storage_id = storage_id

  def persistent_id(self, obj):
    return self.storage_id(obj) if isinstance(obj, Storage) else None

  def _save_global_ref(self, obj):
    self.write(pickle.GLOBAL + f'{obj.module}\n{obj.name}\n'.encode())

  def _save_tensor(self, obj):
    self.save_reduce(Global('torch._utils', '_rebuild_tensor_v2'),
                     (obj.storage, obj.offset, tuple(obj.size),
                      tuple(obj.stride), False, collections.OrderedDict()),
                     obj=obj)

  def _save_call(self, obj):
    self.save_reduce(obj.callable, obj.args, obj=obj)

  dispatch[Global] = _save_global_ref
  dispatch[Tensor] = _save_tensor
  dispatch[Reduce] = _save_call


def _pickle(obj, storage_id) -> bytes:
  buffer = io.BytesIO()
  _Pickler(buffer, storage_id).dump(_tensors_of(obj))
  return buffer.getvalue()


def _storage_type(storage: Storage) -> Global:
  return Global('torch', STORAGE_NAMES[storage.data.dtype])


def write_zip(path, obj, archive: str = 'archive') -> None:
  """torch.save(obj, path) with the zip container (numpy arrays or Tensors
  as the tensors)."""
  keys = {}

  def storage_id(storage):
    key = keys.setdefault(id(storage), (str(len(keys)), storage))[0]
    return ('storage', _storage_type(storage), key, 'cpu',
            storage.data.size)

  data = _pickle(obj, storage_id)
  with zipfile.ZipFile(path, 'w', zipfile.ZIP_STORED) as f:
    f.writestr(f'{archive}/data.pkl', data)
    f.writestr(f'{archive}/byteorder', 'little')
    for key, storage in sorted(keys.values(), key=lambda kv: kv[0]):
      f.writestr(f'{archive}/data/{key}', storage.data.tobytes())
    f.writestr(f'{archive}/version', '3\n')


def write_legacy(path, obj) -> None:
  """torch.save(obj, path, _use_new_zipfile_serialization=False)."""
  keys = {}

  def storage_id(storage):
    # Legacy keys are str(storage._cdata): large, distinct numbers.
    key = keys.setdefault(id(storage), (str(94000000 + 64 * len(keys)),
                                        storage))[0]
    return ('storage', _storage_type(storage), key, 'cpu',
            storage.data.size, None)

  main = _pickle(obj, storage_id)
  sys_info = {'protocol_version': 1001, 'little_endian': True,
              'type_sizes': {'short': 2, 'int': 4, 'long': 8}}
  with open(path, 'wb') as f:
    for header in (LEGACY_MAGIC, 1001, sys_info):
      f.write(pickle.dumps(header, protocol=2))
    f.write(main)
    ordered = sorted(keys.values(), key=lambda kv: kv[0])
    f.write(pickle.dumps([key for key, _ in ordered], protocol=2))
    for _, storage in ordered:
      f.write(struct.pack('<q', storage.data.size))
      f.write(storage.data.tobytes())


class _Python2Pickler(_Pickler):
  """What Python 2's cPickle (protocol 2) writes: str as BINSTRING, numpy
  arrays through numpy.core.multiarray._reconstruct with raw-bytes state."""
  dispatch = dict(_Pickler.dispatch)

  def _save_py2_str(self, obj):
    raw = obj.encode('latin1') if isinstance(obj, str) else obj
    if len(raw) < 256:
      self.write(pickle.SHORT_BINSTRING + bytes([len(raw)]) + raw)
    else:
      self.write(pickle.BINSTRING + struct.pack('<i', len(raw)) + raw)
    self.memoize(obj)

  def _save_array(self, obj):
    dtype = Reduce(Global('numpy', 'dtype'), (obj.dtype.str[1:], 0, 1))
    self.save_reduce(
        Global('numpy.core.multiarray', '_reconstruct'),
        (Global('numpy', 'ndarray'), (0,), 'b'),
        state=(1, obj.shape, _DtypeWithState(dtype), False, obj.tobytes()),
        obj=obj)

  def _save_dtype(self, obj):
    self.save_reduce(obj.reduce.callable, obj.reduce.args,
                     state=(3, '<', None, None, None, -1, -1, 0), obj=obj)

  dispatch[str] = _save_py2_str
  dispatch[bytes] = _save_py2_str
  dispatch[np.ndarray] = _save_array


@dataclasses.dataclass(eq=False)
class _DtypeWithState:
  reduce: Reduce


_Python2Pickler.dispatch[_DtypeWithState] = _Python2Pickler._save_dtype  # pylint: disable=protected-access


def write_detectron_pkl(path, blobs: dict, wrap: bool = True) -> None:
  """A Detectron weights file: {'blobs': blobs} (or the blobs), pickled as
  Python 2 does."""
  buffer = io.BytesIO()
  _Python2Pickler(buffer, lambda s: None).dump(
      {'blobs': blobs} if wrap else blobs)
  with open(path, 'wb') as f:
    f.write(buffer.getvalue())


def maskrcnn_checkpoint(state: dict) -> dict:
  """maskrcnn-benchmark's Checkpointer dict, saved from a DDP model."""
  return {'model': {f'module.{k}': v for k, v in state.items()},
          'optimizer': {'state': {}, 'param_groups': [{'lr': 0.01}]},
          'scheduler': {'last_epoch': 89999, 'milestones': [60000, 80000]},
          'iteration': 90000}
