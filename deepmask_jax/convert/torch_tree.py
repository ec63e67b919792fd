"""Walking and inspecting the Torch module tree of a loaded `.t7` file.

`Node` wraps one object torchfile built (a `TorchObject`, or a plain Lua
table such as the training config) with its path from the file's root, so
every error can say where it happened. Paths are Lua-style and 1-based
(`model.trunk.modules[5].modules[1]`), as the modules appear when the file is
printed in Lua. Type names come back from torchfile as bytes; here they are
`str` (`'cudnn.SpatialConvolution'`).
"""

import numpy as np
import torchfile

from deepmask_jax.convert.errors import ConversionError


def _text(value) -> str:
  return value.decode('utf8', 'replace') if isinstance(value, bytes) else str(value)


def _lua_array(value, first: int):
  """Elements of a Lua array, given as a Python list or a dict of int keys.

  Returns None when `value` is not an array whose keys run first, first+1, ...
  """
  if isinstance(value, list):
    return list(value) if first == 1 else None
  if not isinstance(value, dict):
    return None
  keys = sorted(k for k in value if isinstance(k, int))
  if len(keys) != len(value) or keys != list(range(first, first + len(keys))):
    return None
  return [value[k] for k in keys]


class Node:
  """One object of the file and its path.

  Attributes:
    obj: what torchfile returned (TorchObject, dict, list, number, ...).
    path: where it sits, e.g. 'model.trunk.modules[1]'.
  """

  def __init__(self, obj, path: str):
    self.obj = obj
    self.path = path

  @property
  def typename(self) -> str:
    """The Torch class name, '' for a plain table or value."""
    if isinstance(self.obj, torchfile.TorchObject):
      return _text(self.obj.torch_typename())
    return ''

  @property
  def _table(self) -> dict:
    if isinstance(self.obj, torchfile.TorchObject):
      table = self.obj._obj  # pylint: disable=protected-access
      return table if isinstance(table, dict) else {}
    return self.obj if isinstance(self.obj, dict) else {}

  def describe(self) -> str:
    return f'{self.path} ({self.typename or type(self.obj).__name__})'

  def error(self, problem: str) -> ConversionError:
    """A one-line error naming this node; raise what it returns."""
    return ConversionError(f'{self.describe()}: {problem}')

  def has(self, name: str) -> bool:
    return self.raw(name) is not None

  def raw(self, name: str, default=None):
    """The field `name` as torchfile built it (keys are bytes or str)."""
    table = self._table
    for key in (name.encode(), name):
      if key in table and table[key] is not None:
        return table[key]
    return default

  def child(self, name: str) -> 'Node':
    if not self.has(name):
      raise self.error(f'has no field {name!r}')
    return Node(self.raw(name), f'{self.path}.{name}')

  def children(self, name: str = 'modules', first: int = 1) -> list:
    """The Lua array `name` (`modules` of a container) as a list of Nodes."""
    items = _lua_array(self.raw(name, []), first)
    if items is None:
      raise self.error(f'field {name!r} is not a Lua array indexed from {first}')
    return [Node(item, f'{self.path}.{name}[{i + first}]')
            for i, item in enumerate(items)]

  def number(self, name: str, default=None):
    value = self.raw(name, default)
    if value is None:
      raise self.error(f'has no number field {name!r}')
    if isinstance(value, bool) or not isinstance(value, (int, float)):
      raise self.error(f'field {name!r} is {type(value).__name__}, not a number')
    return value

  def integer(self, name: str, default=None) -> int:
    value = self.number(name, default)
    if value != int(value):
      raise self.error(f'field {name!r} = {value} is not an integer')
    return int(value)

  def string(self, name: str, default=None) -> str:
    value = self.raw(name, default)
    if not isinstance(value, (bytes, str)):
      raise self.error(f'field {name!r} is not a string')
    return _text(value)

  def tensor(self, name: str, required: bool = True):
    """The tensor field `name` as float64 (None if absent and not required)."""
    value = self.raw(name)
    if value is None:
      if required:
        raise self.error(f'has no tensor {name!r}')
      return None
    if not isinstance(value, np.ndarray) or value.dtype.kind not in 'fiu':
      raise self.error(f'field {name!r} is not a numeric tensor')
    if not np.all(np.isfinite(value)):
      raise self.error(f'tensor {name!r} holds NaN or infinite values')
    return value.astype(np.float64)

  def numbers(self, name: str) -> tuple:
    """A LongStorage / Lua array of numbers (e.g. `View.size`) as ints."""
    value = self.raw(name)
    if isinstance(value, np.ndarray):
      return tuple(int(v) for v in value.reshape(-1))
    items = _lua_array(value, 1) if value is not None else None
    if items is None or not all(isinstance(v, (int, float)) for v in items):
      raise self.error(f'field {name!r} is not a list of numbers')
    return tuple(int(v) for v in items)


def describe_tree(node: Node, depth: int = 0, max_depth: int = 12) -> list:
  """Lines that print the module tree: type, key geometry, tensor shapes."""
  fields = []
  for name in ('nInputPlane', 'nOutputPlane', 'kW', 'kH', 'dW', 'dH', 'padW',
               'padH', 'pad_l', 'pad_t', 'eps', 'threshold', 'val', 'p',
               'owidth', 'scale_factor'):
    value = node.raw(name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
      fields.append(f'{name}={value}')
  for name in ('weight', 'bias', 'running_mean', 'running_var', 'running_std',
               'a', 'b'):
    value = node.raw(name)
    if isinstance(value, np.ndarray):
      fields.append(f'{name}{list(value.shape)}')
  lines = [f'{"  " * depth}{node.path.rsplit(".", 1)[-1]}: '
           f'{node.typename or "table"} {" ".join(fields)}'.rstrip()]
  if depth >= max_depth:
    return lines
  names = ['modules'] if node.has('modules') else []
  if node.typename in ('nn.DeepMask', 'nn.SharpMask'):
    names = ['trunk', 'maskBranch', 'maskBranchDM', 'scoreBranch', 'refs']
  for name in names:
    value = node.raw(name)
    if value is None:
      continue
    first = 0 if name == 'refs' else 1
    if isinstance(value, torchfile.TorchObject):
      lines += describe_tree(Node(value, f'{node.path}.{name}'), depth + 1)
      continue
    items = _lua_array(value, first)
    for i, item in enumerate(items or []):
      if isinstance(item, torchfile.TorchObject):
        lines += describe_tree(Node(item, f'{node.path}.{name}[{i + first}]'),
                               depth + 1)
  return lines
