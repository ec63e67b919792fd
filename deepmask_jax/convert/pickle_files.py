"""Reads PyTorch `.pth` checkpoints and Detectron `.pkl` weights without torch.

Containers (recognised by content, not by name):

  * PyTorch >= 1.6 zip: `<archive>/data.pkl` holds the object with
    persistent ids ('storage', type, key, location, numel); the bytes of
    storage `key` are the record `<archive>/data/<key>`; `<archive>/byteorder`
    says 'little' or 'big' (little when absent).
  * PyTorch <= 1.5 legacy stream: pickles of the magic number
    0x1950a86a20f9469cfc6c, the protocol version 1001 and a sys_info dict
    (byte order), then the object (ids as above plus a view field), then the
    sorted list of storage keys; then, per key, an int64 element count and
    the raw elements.
  * Detectron `.pkl`: one Python 2 pickle of {'blobs': {name: ndarray}} or of
    the blob dict itself, read with encoding='latin1'.

Every pickle goes through `restricted_pickle`: a file naming any other
global is refused before anything runs. A file that ends early, a storage
shorter than its tensors, or a malformed stream gives one ConversionError line.
"""

import pickle
import struct
import sys
import zipfile

import numpy as np

from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.restricted_pickle import (PickleRefused,
                                                    RestrictedUnpickler,
                                                    loads, resolve_tensors)

LEGACY_MAGIC = 0x1950a86a20f9469cfc6c
LEGACY_PROTOCOL = 1001
# Binary Torch7 files start with the type tag of a table (3) or object (4).
T7_STARTS = (b'\x03\x00\x00\x00', b'\x04\x00\x00\x00')
# What goes wrong in a damaged stream, besides the refusals.
_CORRUPT = (pickle.UnpicklingError, EOFError, ValueError, TypeError,
            KeyError, IndexError, AttributeError, struct.error,
            UnicodeDecodeError, zipfile.BadZipFile, zipfile.LargeZipFile,
            OverflowError, MemoryError, RecursionError)


def sniff(path: str) -> str:
  """'t7', 'zip', 'tar', 'pickle' (a legacy .pth or a .pkl) or 'unknown'."""
  with open(path, 'rb') as f:
    head = f.read(512)
  if head.startswith(b'PK\x03\x04'):
    return 'zip'
  if head[:4] in T7_STARTS:
    return 't7'
  if head[257:262] == b'ustar':
    return 'tar'
  # Protocol 2+ starts with PROTO; protocol 0/1 dicts with '}' or '(' .
  if head[:1] in (b'\x80', b'}', b'(') or head.startswith(b'ccollections'):
    return 'pickle'
  return 'unknown'


def _guarded(path: str, read):
  try:
    return read()
  except PickleRefused as e:
    raise ConversionError(f'refusing to load {path}: {e}') from None
  except _CORRUPT as e:
    raise ConversionError(f'{path}: truncated or corrupt file: '
                          f'{type(e).__name__}: {e}'.splitlines()[0]) from None


def _swap_if(big_endian: bool, storages: dict) -> None:
  if big_endian != (sys.byteorder == 'big'):
    for storage in storages.values():
      if storage.data is not None:
        storage.data = storage.data.byteswap()


def _archive_prefix(names: list) -> str:
  pickles = [n for n in names if n.endswith('/data.pkl') and n.count('/') == 1]
  if len(pickles) != 1:
    raise ValueError(f'expected one <archive>/data.pkl record, found '
                     f'{len(pickles)}')
  prefix = pickles[0][:-len('data.pkl')]
  if f'{prefix}constants.pkl' in names or any(
      n.startswith(f'{prefix}code/') for n in names):
    raise ValueError('this is a TorchScript archive (torch.jit.save); save '
                     'the state_dict with torch.save instead')
  return prefix


def _read_zip(path: str):
  with zipfile.ZipFile(path) as archive:
    names = archive.namelist()
    prefix = _archive_prefix(names)
    storages = {}
    obj = loads(archive.read(f'{prefix}data.pkl'), storages)
    for storage in storages.values():
      if storage.root is not None:
        continue
      record = f'{prefix}data/{storage.key}'
      if record not in names:
        raise ValueError(f'storage record {record} is missing')
      raw = archive.read(record)  # Checks the CRC too.
      expected = storage.numel * storage.dtype.itemsize
      if len(raw) != expected:
        raise ValueError(f'storage {record} has {len(raw)} bytes, its '
                         f'{storage.numel} elements need {expected}')
      storage.data = np.frombuffer(raw, storage.dtype)
    order = (archive.read(f'{prefix}byteorder').decode() if
             f'{prefix}byteorder' in names else 'little')
  _swap_if(order == 'big', storages)
  return resolve_tensors(obj)


def _read_legacy_storages(f, keys, storages: dict) -> None:
  if not isinstance(keys, list) or sorted(map(str, keys)) != sorted(
      k for k in storages if isinstance(k, str)):
    raise ValueError('the storage key list does not match the storages the '
                     'checkpoint refers to')
  for key in keys:
    storage = storages[str(key)]
    head = f.read(8)
    if len(head) < 8:
      raise EOFError(f'the file ends before storage {key}')
    count, = struct.unpack('<q', head)
    if count != storage.numel:
      raise ValueError(f'storage {key} holds {count} elements, the '
                       f'checkpoint expects {storage.numel}')
    nbytes = count * storage.dtype.itemsize
    raw = f.read(nbytes)
    if len(raw) != nbytes:
      raise EOFError(f'storage {key} needs {nbytes} bytes, {len(raw)} are '
                     'left')
    storage.data = np.frombuffer(raw, storage.dtype)


def _read_pickle_stream(path: str):
  """('pth', object) for a legacy checkpoint, ('pkl', object) otherwise."""
  storages = {}
  with open(path, 'rb') as f:
    first = RestrictedUnpickler(f, storages, encoding='latin1').load()
    if first != LEGACY_MAGIC:
      if not isinstance(first, dict):
        raise ValueError(f'the pickle holds a {type(first).__name__}, not a '
                         'dict of weights')
      return 'pkl', first
    unpickle = lambda **kw: RestrictedUnpickler(
        f, storages, encoding='latin1', **kw).load()
    version = unpickle()
    if version != LEGACY_PROTOCOL:
      raise ValueError(f'legacy protocol version {version!r}, expected '
                       f'{LEGACY_PROTOCOL}')
    sys_info = unpickle()
    obj = unpickle(with_views=True)
    _read_legacy_storages(f, unpickle(), storages)
  little = sys_info.get('little_endian', True) if isinstance(
      sys_info, dict) else True
  _swap_if(not little, storages)
  return 'pth', resolve_tensors(obj)


def read_pickled_weights(path: str):
  """(kind, object): kind 'pth' (PyTorch, either container) or 'pkl'.

  Tensors come back as numpy arrays. Raises ConversionError (one line) for a
  refused global or a damaged file.
  """
  kind = sniff(path)
  if kind == 'zip':
    return 'pth', _guarded(path, lambda: _read_zip(path))
  if kind == 'pickle':
    return _guarded(path, lambda: _read_pickle_stream(path))
  if kind == 'tar':
    raise ConversionError(f'{path}: a PyTorch < 0.4 tar checkpoint; re-save '
                          'it with a newer PyTorch')
  raise ConversionError(f'{path}: not a .t7, PyTorch .pth or Detectron .pkl '
                        'file (unrecognised first bytes)')
