"""Unpickling with an allow-list: the globals a state dict needs, nothing else.

A pickle names the callables that rebuild its objects (`os.system` works as
well as `collections.OrderedDict`), and `pickle.load` calls them. This
unpickler resolves only the names below; any other global is refused before
anything is called, with a one-line error naming it. The allowed names map to
inert stand-ins or to functions of this module:

  * `collections.OrderedDict` (state dicts);
  * `torch.<Type>Storage`: a `StorageType` marker carrying the numpy dtype;
  * `torch._utils._rebuild_tensor_v2` / `_rebuild_parameter`: a
    `PendingTensor` (storage, offset, size, stride), turned into a numpy
    array by `resolve_tensors` once the storages' bytes are read (the legacy
    container stores them after the pickle);
  * numpy's array and scalar reconstruction (Detectron `.pkl` files), and
    `_codecs.encode`, which Python 3 writes for bytes in protocol 2.

`torch.storage._load_from_bytes` (it calls torch.load) and everything else
are refused. No torch is imported.
"""

import collections
import dataclasses
import io
import pickle

import ml_dtypes
import numpy as np

try:  # numpy >= 2 keeps the implementation in numpy._core.
  from numpy._core import multiarray as _multiarray
except ImportError:  # pragma: no cover - numpy 1.x.
  from numpy.core import multiarray as _multiarray

# torch storage type -> element dtype (little-endian unless the file says not).
STORAGE_DTYPES = {
    'FloatStorage': np.float32, 'DoubleStorage': np.float64,
    'HalfStorage': np.float16, 'BFloat16Storage': ml_dtypes.bfloat16,
    'LongStorage': np.int64, 'IntStorage': np.int32, 'ShortStorage': np.int16,
    'CharStorage': np.int8, 'ByteStorage': np.uint8, 'BoolStorage': np.bool_,
}


class PickleRefused(Exception):
  """A pickle names a global outside the allow-list, or a malformed id."""


@dataclasses.dataclass(frozen=True)
class StorageType:
  """Stands for `torch.FloatStorage` etc.; never called."""
  name: str

  @property
  def dtype(self) -> np.dtype:
    return np.dtype(STORAGE_DTYPES[self.name])


@dataclasses.dataclass(eq=False)
class Storage:
  """A storage the pickle refers to by key; `data` (1-D) is filled later.

  A legacy view (`root`, `offset`) shares its root's data.
  """
  key: str
  dtype: np.dtype
  numel: int
  data: np.ndarray = None
  root: 'Storage' = None
  offset: int = 0

  def array(self) -> np.ndarray:
    if self.root is not None:
      return self.root.array()[self.offset:self.offset + self.numel]
    if self.data is None:
      raise ValueError(f'storage {self.key} was never read')
    return self.data


@dataclasses.dataclass(eq=False)
class PendingTensor:
  """A tensor to cut from its storage: offset, size and stride in elements."""
  storage: Storage
  offset: int
  size: tuple
  stride: tuple

  def array(self) -> np.ndarray:
    """A fresh C-contiguous copy; the view must lie inside the storage."""
    data = self.storage.array()
    if len(self.size) != len(self.stride) or min(
        (self.offset,) + self.size + self.stride, default=0) < 0:
      raise ValueError(f'bad tensor view: offset {self.offset}, size '
                       f'{self.size}, stride {self.stride}')
    if 0 in self.size:
      return np.zeros(self.size, data.dtype)
    last = self.offset + sum((n - 1) * s for n, s in zip(self.size, self.stride))
    if last >= data.size:
      raise ValueError(f'a tensor of size {self.size} at offset {self.offset} '
                       f'reaches element {last} of a storage of {data.size}')
    view = np.lib.stride_tricks.as_strided(
        data[self.offset:], self.size,
        tuple(s * data.itemsize for s in self.stride), writeable=False)
    return np.array(view)


def _ints(values, what: str) -> tuple:
  values = tuple(values)
  if not all(isinstance(v, int) for v in values):
    raise PickleRefused(f'tensor {what} must be integers, got {values!r}')
  return values


def _rebuild_tensor_v2(storage, storage_offset, size, stride, *unused):
  """torch._utils._rebuild_tensor_v2(storage, offset, size, stride,
  requires_grad, backward_hooks[, metadata]) -> PendingTensor."""
  if not isinstance(storage, Storage):
    raise PickleRefused('a tensor whose storage is not a persistent storage')
  return PendingTensor(storage, _ints([storage_offset], 'offset')[0],
                       _ints(size, 'size'), _ints(stride, 'stride'))


def _rebuild_parameter(data, *unused):
  """nn.Parameter(data, requires_grad, backward_hooks) -> the data."""
  return data


def _allowed_globals() -> dict:
  allowed = {
      ('collections', 'OrderedDict'): collections.OrderedDict,
      ('torch._utils', '_rebuild_tensor_v2'): _rebuild_tensor_v2,
      ('torch._utils', '_rebuild_parameter'): _rebuild_parameter,
      ('torch', 'Size'): tuple,
      ('numpy', 'ndarray'): np.ndarray,
      ('numpy', 'dtype'): np.dtype,
      ('_codecs', 'encode'): _latin1_bytes,
  }
  for module in ('numpy.core.multiarray', 'numpy._core.multiarray'):
    allowed[(module, '_reconstruct')] = _multiarray._reconstruct
    allowed[(module, 'scalar')] = _multiarray.scalar
  for module in ('torch', 'torch.cuda'):
    for name in STORAGE_DTYPES:
      allowed[(module, name)] = StorageType(name)
  return allowed


def _latin1_bytes(text, encoding='latin1'):
  """`_codecs.encode(str, 'latin1')`: how protocol 2 spells bytes."""
  if not isinstance(text, str) or encoding not in ('latin1', 'latin-1'):
    raise PickleRefused(f'_codecs.encode with {type(text).__name__}, '
                        f'{encoding!r}')
  return text.encode('latin1')


ALLOWED_GLOBALS = _allowed_globals()


class RestrictedUnpickler(pickle.Unpickler):
  """pickle.Unpickler that resolves only ALLOWED_GLOBALS.

  storages: the Storage objects by key that persistent ids named so far,
  shared by every pickle of one file. `with_views` accepts the legacy
  container's 6-field ids (with view metadata).
  """

  def __init__(self, file, storages: dict, with_views: bool = False,
               encoding: str = 'utf-8'):
    super().__init__(file, encoding=encoding)
    self.storages = storages
    self.with_views = with_views

  def find_class(self, module, name):
    try:
      value = ALLOWED_GLOBALS[(module, name)]
    except (KeyError, TypeError):
      raise PickleRefused(f'pickle global {module}.{name} is not allowed'
                          ) from None
    # A fresh marker: a BUILD opcode must not alter the shared one.
    return StorageType(value.name) if isinstance(value, StorageType) else value

  def persistent_load(self, pid):
    """('storage', StorageType, key, location, numel[, view_metadata])."""
    fields = 6 if self.with_views else 5
    if not (isinstance(pid, tuple) and len(pid) == fields
            and pid[0] in ('storage', b'storage')):
      raise PickleRefused(f'unexpected persistent id {pid!r:.80}')
    storage_type, key, _, numel = pid[1:5]
    if not isinstance(storage_type, StorageType) or not isinstance(
        numel, int) or numel < 0:
      raise PickleRefused(f'bad storage record {pid!r:.80}')
    storage = self._root(str(key), storage_type.dtype, numel)
    view = pid[5] if self.with_views else None
    if view is None:
      return storage
    view_key, offset, view_numel = view
    _ints((offset, view_numel), 'view')
    if offset < 0 or view_numel < 0 or offset + view_numel > numel:
      raise PickleRefused(f'storage view {view!r} outside its storage')
    return self.storages.setdefault(
        ('view', str(view_key)), Storage(str(view_key), storage.dtype,
                                         view_numel, root=storage,
                                         offset=offset))

  def _root(self, key, dtype, numel) -> Storage:
    storage = self.storages.setdefault(key, Storage(key, dtype, numel))
    if (storage.dtype, storage.numel) != (dtype, numel):
      raise PickleRefused(f'storage {key} is named with two types or sizes')
    return storage


def resolve_tensors(obj):
  """`obj` with every PendingTensor replaced by its numpy array, recursively."""
  if isinstance(obj, PendingTensor):
    return obj.array()
  if isinstance(obj, dict):
    return type(obj)((k, resolve_tensors(v)) for k, v in obj.items())
  if isinstance(obj, (list, tuple)):
    return type(obj)(resolve_tensors(v) for v in obj)
  return obj


def loads(data: bytes, storages: dict = None, **kwargs):
  """One restricted pickle from bytes (tests and the zip container)."""
  return RestrictedUnpickler(io.BytesIO(data), {} if storages is None
                             else storages, **kwargs).load()
