"""Malicious pickles are refused before anything runs; damaged files give one
line and leave nothing behind."""

import io
import pathlib
import pickle
import zipfile

import numpy as np
import pytest

from deepmask_jax.convert.__main__ import run
from deepmask_jax.testing import embedmask_reference as reference
from deepmask_jax.testing import pth_writer
from deepmask_jax.testing.pth_writer import Global, Reduce

GEOMETRY = reference.Geometry()


def _payloads(marker: pathlib.Path) -> dict:
  """global -> an object that, unpickled by plain pickle, creates `marker`."""
  touch = f'touch {marker}'
  return {
      'os.system': Reduce(Global('os', 'system'), (touch,)),
      'posix.system': Reduce(Global('posix', 'system'), (touch,)),
      'builtins.eval': Reduce(Global('builtins', 'eval'),
                              (f'open({str(marker)!r}, "w")',)),
      'builtins.exec': Reduce(Global('builtins', 'exec'),
                              (f'open({str(marker)!r}, "w")',)),
      'subprocess.Popen': Reduce(Global('subprocess', 'Popen'),
                                 (['touch', str(marker)],)),
      # Would call torch.load on attacker bytes; refused like the rest.
      'torch.storage._load_from_bytes': Reduce(
          Global('torch.storage', '_load_from_bytes'), (b'x',)),
  }


def _write(kind: str, path, payload) -> None:
  state = {'backbone.body.stem.conv1.weight': np.ones((2, 3, 7, 7),
                                                       np.float32),
           'evil': payload}
  if kind == 'zip':
    pth_writer.write_zip(path, {'model': state, 'iteration': 1})
  elif kind == 'legacy':
    pth_writer.write_legacy(path, state)
  else:
    pth_writer.write_detectron_pkl(path, {'conv1_w': np.ones(3, np.float32),
                                          'evil': payload})


def _run(path, out):
  stdout, stderr = io.StringIO(), io.StringIO()
  status = run(str(path), str(out), stdout=stdout, stderr=stderr)
  return status, stderr.getvalue()


def test_the_payload_is_real(tmp_path):
  """Plain pickle would run it: what the next test refuses does harm."""
  marker = tmp_path / 'pwned'
  path = tmp_path / 'evil.pkl'
  _write('pkl', path, _payloads(marker)['os.system'])
  with open(path, 'rb') as f:
    pickle.load(f, encoding='latin1')  # The unsafe way.
  assert marker.exists()


@pytest.mark.parametrize('kind', ['zip', 'legacy', 'pkl'])
@pytest.mark.parametrize('name', sorted(_payloads(pathlib.Path('m'))))
def test_malicious_pickle_is_refused(tmp_path, kind, name):
  marker = tmp_path / 'pwned'
  path, out = tmp_path / f'evil.{kind}', tmp_path / 'out'
  _write(kind, path, _payloads(marker)[name])
  status, stderr = _run(path, out)
  assert status == 1
  assert stderr == (f'error: refusing to load {path}: pickle global {name} '
                    'is not allowed\n')
  assert not marker.exists()
  assert not out.exists() and not pathlib.Path(f'{out}.partial').exists()


def _truncate(data: bytes) -> bytes:
  return data[:len(data) * 2 // 3]


def _flip_storage_byte(path) -> None:
  """Changes one byte inside a zip storage record (its CRC then fails)."""
  with zipfile.ZipFile(path) as f:
    info = f.getinfo('archive/data/3')
  data = bytearray(pathlib.Path(path).read_bytes())
  start = info.header_offset + 30 + len(info.filename) + len(info.extra)
  data[start + 5] ^= 0xFF
  pathlib.Path(path).write_bytes(bytes(data))


@pytest.mark.parametrize('kind, damage, message', [
    ('zip', _truncate, 'truncated or corrupt file: BadZipFile'),
    ('legacy', _truncate, 'truncated or corrupt file'),
    ('pkl', _truncate, 'truncated or corrupt file'),
    ('legacy', lambda d: d[:-3], 'bytes, '),
    ('legacy', lambda d: d[:40] + b'\x00' * 20 + d[60:],
     'truncated or corrupt file'),
    ('zip', 'flip', 'Bad CRC-32'),
    ('junk', lambda d: b'\x89PNG\r\n\x1a\n' + d,
     'not a .t7, PyTorch .pth or Detectron .pkl file'),
])
def test_damaged_file_gives_one_line(tmp_path, kind, damage, message):
  path, out = tmp_path / 'model.pth', tmp_path / 'out'
  state = reference.embedmask_state(GEOMETRY, seed=0)
  writer = (pth_writer.write_detectron_pkl if kind == 'pkl'
            else pth_writer.write_legacy if kind == 'legacy'
            else pth_writer.write_zip)
  writer(path, state)
  if damage == 'flip':
    _flip_storage_byte(path)
  else:
    path.write_bytes(damage(path.read_bytes()))
  status, stderr = _run(path, out)
  assert status == 1 and stderr.count('\n') == 1, stderr
  assert message in stderr and str(path) in stderr, stderr
  assert not out.exists() and not pathlib.Path(f'{out}.partial').exists()


def test_tensor_outside_its_storage(tmp_path):
  path, out = tmp_path / 'view.pth', tmp_path / 'out'
  storage = pth_writer.Storage(np.zeros(10, np.float32))
  pth_writer.write_zip(path, {'w': pth_writer.Tensor(storage, 4, (3, 3),
                                                     (3, 1))})
  status, stderr = _run(path, out)
  assert status == 1
  assert 'reaches element 12 of a storage of 10' in stderr, stderr
