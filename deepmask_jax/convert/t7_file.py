"""Reads a binary Torch7 `.t7` file with torchfile, strictly, running no code.

torchfile turns the file into plain Python objects (tables, `TorchObject`s,
numpy arrays; a Lua function stays an inert record of its bytecode), so
reading a file never executes anything from it. It trusts the file, though;
this module adds the checks a converter of downloaded files needs:

  * a storage must fit in the bytes left in the file: torchfile's
    `np.fromfile` silently returns a short array for a truncated file, and
    a tensor view over it would then reach past its end;
  * a tensor's view (size, stride, offset) must lie inside its storage; it is
    copied into a fresh C-contiguous array (torchfile returns
    `as_strided` views into the shared storage);
  * strings must fit in the file.

`Cuda*Tensor`/`Cuda*Storage` are read like their CPU types (no GPU needed).
Lua arrays come back as dicts with 1-based integer keys
(`use_list_heuristic=False`): torchfile's list heuristic fails on arrays of
tensors under numpy 2 (`invalid __array_struct__`), and `torch_tree` accepts
both forms anyway.
"""

import contextlib
import os
import struct

import numpy as np
import torchfile

from deepmask_jax.convert.errors import ConversionError

# torch.save writes a table ({model=..., config=...}) or a Torch object first.
_FIRST_TYPE_TAGS = (torchfile.TYPE_TABLE, torchfile.TYPE_TORCH)
_MAX_TENSOR_DIMS = 16
_ELEMENT_TYPES = {
    'Byte': np.uint8, 'Char': np.int8, 'Short': np.int16, 'Int': np.int32,
    'Long': np.int64, 'Float': np.float32, 'Double': np.float64,
}


def _bytes_left(file) -> int:
  return os.fstat(file.fileno()).st_size - file.tell()


def _storage_reader(dtype):
  """Reads a Torch storage: a long element count, then the raw elements."""
  itemsize = np.dtype(dtype).itemsize

  def read(reader, unused_version):
    count = reader.read_long()
    left = _bytes_left(reader.f)
    if count < 0 or count * itemsize > left:
      raise ConversionError(
          f'truncated or corrupt file: a storage of {count} elements needs '
          f'{count * itemsize} bytes, {left} are left')
    return np.fromfile(reader.f, dtype=dtype, count=count)

  return read


def _tensor_reader(dtype):
  """Reads a Torch tensor header and its storage; returns a contiguous copy."""

  def read(reader, unused_version):
    ndim = reader.read_int()
    if not 0 <= ndim <= _MAX_TENSOR_DIMS:
      raise ConversionError(f'corrupt tensor header: {ndim} dimensions')
    size = [reader.read_long() for _ in range(ndim)]
    stride = [reader.read_long() for _ in range(ndim)]
    offset = reader.read_long() - 1  # Torch offsets are 1-based.
    storage = reader.read_obj()
    if storage is None or ndim == 0:
      return np.empty((0,), dtype)
    if not isinstance(storage, np.ndarray) or storage.ndim != 1:
      raise ConversionError('corrupt tensor: its storage is not a storage')
    if min(size) < 0 or min(stride) < 0 or offset < 0:
      raise ConversionError(f'corrupt tensor view: size {size}, stride '
                            f'{stride}, offset {offset + 1}')
    if min(size) == 0:
      return np.zeros(size, storage.dtype)
    last = offset + sum((n - 1) * s for n, s in zip(size, stride))
    if last >= storage.size:
      raise ConversionError(
          f'corrupt tensor view: size {size}, stride {stride} and offset '
          f'{offset + 1} reach element {last + 1} of a {storage.size}-element '
          'storage')
    view = np.lib.stride_tricks.as_strided(
        storage[offset:], shape=size,
        strides=[s * storage.itemsize for s in stride], writeable=False)
    return np.array(view, copy=True, order='C')

  return read


def _strict_handlers() -> dict:
  handlers = {}
  for prefix in ('torch.', 'torch.Cuda'):
    for element, dtype in _ELEMENT_TYPES.items():
      if prefix == 'torch.Cuda' and element == 'Float':
        element = ''  # torch.CudaTensor is the float32 CUDA type.
      handlers[f'{prefix}{element}Tensor'.encode()] = _tensor_reader(dtype)
      handlers[f'{prefix}{element}Storage'.encode()] = _storage_reader(dtype)
  return handlers


@contextlib.contextmanager
def _strict_type_handlers():
  """Swaps torchfile's tensor/storage readers for the checked ones, then back.

  torchfile looks readers up in its module-level `type_handlers` table (its
  documented extension point), so the swap is global while a file is read.
  """
  strict = _strict_handlers()
  saved = {name: torchfile.type_handlers.get(name) for name in strict}
  torchfile.type_handlers.update(strict)
  try:
    yield
  finally:
    for name, handler in saved.items():
      if handler is None:
        torchfile.type_handlers.pop(name, None)
      else:
        torchfile.type_handlers[name] = handler


class _StrictReader(torchfile.T7Reader):
  """torchfile's reader with a length check on strings."""

  def read_string(self, disable_utf8=False):
    size = self.read_int()
    if size < 0 or size > _bytes_left(self.f):
      raise ConversionError(f'truncated or corrupt file: a string of {size} '
                            f'bytes, {_bytes_left(self.f)} are left')
    data = self.f.read(size)
    if disable_utf8 or not self.utf8_decode_strings:
      return data
    return data.decode('utf8')


def load_t7(path: str):
  """Reads the object a binary `.t7` file holds, or raises ConversionError.

  Returns what torchfile builds: `torchfile.TorchObject`s for Torch classes,
  `hashable_uniq_dict`s for tables (bytes keys for strings), numpy arrays for
  tensors (each a contiguous copy). Nothing from the file is executed.
  """
  if not os.path.isfile(path):
    raise ConversionError(f'{path}: no such file')
  with open(path, 'rb') as f:
    header = f.read(4)
    if len(header) < 4:
      raise ConversionError(f'{path}: not a Torch7 file (only {len(header)} '
                            'bytes)')
    (first_tag,) = struct.unpack('<i', header)
    if first_tag not in _FIRST_TYPE_TAGS:
      raise ConversionError(
          f'{path}: not a binary Torch7 file (it starts with type tag '
          f'{first_tag}; torch.save starts with a table or a Torch object)')
    f.seek(0)
    reader = _StrictReader(f, use_list_heuristic=False)
    try:
      with _strict_type_handlers():
        return reader.read_obj()
    except ConversionError as e:
      raise ConversionError(f'{path}: {e}') from None
    except (struct.error, EOFError):
      raise ConversionError(
          f'{path}: truncated file (it ends inside an object, at byte '
          f'{f.tell()})') from None
    except torchfile.T7ReaderException as e:
      raise ConversionError(f'{path}: not a Torch7 file ({e})') from None
    except NotImplementedError as e:
      raise ConversionError(
          f'{path}: {e} (half-precision tensors are not supported; save the '
          'model as float in Torch first)') from None
    except (ValueError, TypeError, OverflowError, MemoryError,
            UnicodeDecodeError) as e:
      raise ConversionError(f'{path}: not a readable Torch7 file '
                            f'({type(e).__name__}: {e})') from None
