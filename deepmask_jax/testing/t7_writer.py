"""A small writer of the binary Torch7 format (torch.save / torch.load), for tests.

torchfile can only read; the tests build module trees shaped like the
released files and write them with this. Format (torch7 File.lua, little
endian, longs 8 bytes): each value is an int type tag and its payload;
tables and Torch objects also carry a reference index, so an object written
twice is stored once and read back as the same object (SharpMask's `neths`
are the branches of its `refs`). A Torch object is written as its version
string ("V 1"), its class name, and then its fields as a table; tensors and
storages have their own payloads (torch7 generic/Tensor.c, Storage.c).
"""

import dataclasses
import struct
from typing import Any

import numpy as np

NIL, NUMBER, STRING, TABLE, TORCH, BOOLEAN, FUNCTION = 0, 1, 2, 3, 4, 5, 6
_STORAGE_TYPES = {np.dtype(np.float32): 'Float', np.dtype(np.float64): 'Double',
                  np.dtype(np.int64): 'Long', np.dtype(np.int32): 'Int',
                  np.dtype(np.uint8): 'Byte'}


@dataclasses.dataclass(eq=False)
class TorchObject:
  """An instance of a Torch class: `typename` plus its fields."""
  typename: str
  fields: dict
  version: int = 1


@dataclasses.dataclass(eq=False)
class Tensor:
  """A tensor view into a flat storage (Torch strides in elements).

  `cuda` writes torch.Cuda*Tensor / Cuda*Storage type names.
  """
  storage: np.ndarray
  size: tuple
  stride: tuple
  offset: int = 0  # 0-based here; the file holds offset + 1.
  cuda: bool = False

  @classmethod
  def of(cls, array, cuda=False) -> 'Tensor':
    array = np.ascontiguousarray(array)
    strides = tuple(s // array.itemsize for s in array.strides)
    return cls(array.reshape(-1), array.shape, strides, 0, cuda)

  def array(self) -> np.ndarray:
    """The values the view shows."""
    return np.lib.stride_tricks.as_strided(
        self.storage[self.offset:], self.size,
        [s * self.storage.itemsize for s in self.stride]).copy()

  def typenames(self):
    element = _STORAGE_TYPES[self.storage.dtype]
    if self.cuda:
      element = '' if element == 'Float' else element
      return f'torch.Cuda{element}Tensor', f'torch.Cuda{element}Storage'
    return f'torch.{element}Tensor', f'torch.{element}Storage'


@dataclasses.dataclass(eq=False)
class Storage:
  """A bare storage, e.g. the torch.LongStorage of `nn.View.size`."""
  data: np.ndarray


@dataclasses.dataclass(eq=False)
class LuaFunction:
  """A serialised Lua function: bytecode and upvalues (never run by readers)."""
  bytecode: bytes
  upvalues: Any = None


class _Writer:
  """Writes values; memoises objects by identity to emit references."""

  def __init__(self, file, cuda: bool):
    self.file = file
    self.cuda = cuda
    self.indices = {}
    self.tensors = {}  # id(numpy array) -> its Tensor.
    self.alive = []  # Keeps memoised objects alive so ids stay unique.

  def _pack(self, fmt, *values):
    self.file.write(struct.pack('<' + fmt, *values))

  def _string(self, text):
    data = text.encode() if isinstance(text, str) else text
    self._pack('i', len(data))
    self.file.write(data)

  def _reference(self, tag, obj) -> bool:
    """Writes tag and index; True if the object was written before."""
    self._pack('i', tag)
    known = id(obj) in self.indices
    if not known:
      self.indices[id(obj)] = len(self.indices) + 1
      self.alive.append(obj)
    self._pack('i', self.indices[id(obj)])
    return known

  def value(self, value):
    if value is None:
      self._pack('i', NIL)
    elif isinstance(value, bool):
      self._pack('ii', BOOLEAN, int(value))
    elif isinstance(value, (int, float, np.number)):
      self._pack('id', NUMBER, float(value))
    elif isinstance(value, (str, bytes)):
      self._pack('i', STRING)
      self._string(value)
    elif isinstance(value, np.ndarray):
      self.value(self._tensor_for(value))
    elif isinstance(value, Tensor):
      self._tensor(value)
    elif isinstance(value, TorchObject):
      if not self._reference(TORCH, value):
        self._string(f'V {value.version}')
        self._string(value.typename)
        self.value(value.fields)
    elif isinstance(value, Storage):
      self._storage(value.data, f'torch.{_STORAGE_TYPES[value.data.dtype]}Storage')
    elif isinstance(value, LuaFunction):
      if not self._reference(FUNCTION, value):
        self._string(value.bytecode)
        self.value(value.upvalues)
    elif isinstance(value, (dict, list)):
      self._table(value)
    else:
      raise TypeError(f'cannot write {type(value).__name__}')

  def _tensor_for(self, array: np.ndarray) -> Tensor:
    """One Tensor per numpy array, so a shared array stays shared."""
    if id(array) not in self.tensors:
      self.alive.append(array)
      self.tensors[id(array)] = Tensor.of(array, self.cuda)
    return self.tensors[id(array)]

  def _tensor(self, tensor: Tensor):
    tensor_type, storage_type = tensor.typenames()
    if self._reference(TORCH, tensor):
      return
    self._string('V 1')
    self._string(tensor_type)
    self._pack('i', len(tensor.size))
    self._pack(f'{len(tensor.size)}q', *tensor.size)
    self._pack(f'{len(tensor.stride)}q', *tensor.stride)
    self._pack('q', tensor.offset + 1)
    self._storage(tensor.storage, storage_type)

  def _storage(self, data: np.ndarray, typename: str):
    if self._reference(TORCH, data):
      return
    self._string('V 1')
    self._string(typename)
    self._pack('q', data.size)
    self.file.write(np.ascontiguousarray(data).tobytes())

  def _table(self, table):
    if self._reference(TABLE, table):
      return
    items = (list(enumerate(table, start=1)) if isinstance(table, list)
             else list(table.items()))
    self._pack('i', len(items))
    for key, item in items:
      self.value(key)
      self.value(item)


def write_t7(path, value, cuda: bool = False) -> None:
  """torch.save(path, value): dicts/lists become Lua tables (lists 1-based),
  numpy arrays become Float/Double/... tensors (Cuda* when `cuda`)."""
  with open(path, 'wb') as f:
    _Writer(f, cuda).value(value)
