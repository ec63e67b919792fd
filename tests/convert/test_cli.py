"""`python -m deepmask_jax.convert`: writes a loadable model dir, or one error line."""

import io
import os
import pathlib
import subprocess
import sys

import numpy as np
import pytest

from deepmask_jax.config_renames import apply_renames
from deepmask_jax.convert import read_t7
from deepmask_jax.convert.__main__ import run
from deepmask_jax.models.store import load_model
from deepmask_jax.testing import pth_writer
from deepmask_jax.testing import embedmask_reference
from deepmask_jax.testing import torch_trees as trees

REPO = pathlib.Path(__file__).resolve().parents[2]
GEOMETRY = trees.Geometry()


def _command(*args):
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.run([sys.executable, '-m', 'deepmask_jax.convert', *args],
                        capture_output=True, text=True, cwd=REPO, env=env,
                        timeout=300, check=False)


def _flat(tree, prefix=''):
  if isinstance(tree, dict):
    return {k: v for name, sub in tree.items()
            for k, v in _flat(sub, f'{prefix}/{name}').items()}
  return {prefix: np.asarray(tree)}


def test_command_writes_a_model_directory(write_file, tmp_path):
  t7 = write_file(trees.deepmask_file(GEOMETRY))
  out = tmp_path / 'deepmask'
  result = _command('--t7', t7, '--out', str(out))
  assert result.returncode == 0, result.stderr
  assert 'deepmask model' in result.stdout
  variables, config = load_model(str(out))
  expected = read_t7(t7)
  # Stored configs are read through the renames (no old-name placeholders).
  assert config.to_dict() == apply_renames(expected.config).to_dict()
  ours, theirs = _flat(variables), _flat(expected.variables)
  assert ours.keys() == theirs.keys()
  for key, value in theirs.items():
    np.testing.assert_array_equal(ours[key], value, err_msg=key)


def test_command_fails_in_one_line_and_writes_nothing(write_file, tmp_path):
  t7 = pathlib.Path(write_file(trees.resnet_file(GEOMETRY, trees.TrunkStyle())))
  t7.write_bytes(t7.read_bytes()[:-1000])
  out = tmp_path / 'resnet'
  result = _command('--t7', str(t7), '--out', str(out))
  assert result.returncode == 1
  assert result.stderr.strip().count('\n') == 0, result.stderr
  assert 'truncated' in result.stderr and str(t7) in result.stderr
  assert not out.exists() and not pathlib.Path(f'{out}.partial').exists()


def _unknown_module(tree):
  tree['model'].fields['scoreBranch'].fields['modules'][2].typename = 'nn.ELU'
  return tree


def _wrong_shape(tree):
  conv = tree['model'].fields['trunk'].fields['modules'][8]
  conv.fields['weight'] = conv.fields['weight'][:, :-1]
  return tree


@pytest.mark.parametrize('damage, message', [
    (_unknown_module, r'model.scoreBranch.modules[3] (nn.ELU): module type'),
    (_wrong_shape, r'model.trunk.modules[9] (cudnn.SpatialConvolution): weight '
                   'has shape'),
])
def test_bad_module_tree_names_the_module(write_file, tmp_path, damage, message):
  t7 = write_file(damage(trees.deepmask_file(GEOMETRY)))
  out, stderr = tmp_path / 'out', io.StringIO()
  assert run(t7, str(out), stdout=io.StringIO(), stderr=stderr) == 1
  assert message in stderr.getvalue() and t7 in stderr.getvalue()
  assert stderr.getvalue().count('\n') == 1
  assert not out.exists() and not pathlib.Path(f'{out}.partial').exists()


def test_not_a_torch7_file(tmp_path):
  path = tmp_path / 'image.jpg'
  path.write_bytes(b'\xff\xd8\xff\xe0\x00\x10JFIF\x00' + bytes(100))
  stderr = io.StringIO()
  assert run(str(path), str(tmp_path / 'out'), stderr=stderr) == 1
  assert 'not a .t7, PyTorch .pth or Detectron .pkl file' in stderr.getvalue()
  assert not (tmp_path / 'out').exists()


def test_existing_output_is_not_overwritten(write_file, tmp_path):
  t7 = write_file(trees.resnet_file(GEOMETRY, trees.TrunkStyle()))
  out = tmp_path / 'exists'
  out.mkdir()
  stderr = io.StringIO()
  assert run(t7, str(out), stdout=io.StringIO(), stderr=stderr) == 1
  assert 'already exists' in stderr.getvalue() and not os.listdir(out)


def test_inspect_prints_the_module_tree(write_file):
  t7 = write_file(trees.sharpmask_file(GEOMETRY))
  stdout = io.StringIO()
  assert run(t7, None, inspect=True, stdout=stdout) == 0
  text = stdout.getvalue()
  assert 'nn.SharpMask' in text and 'refs[0]: nn.Sequential' in text
  assert 'inn.ConstAffine' in text and 'weight[8, 3, 7, 7]' in text


def test_conversion_imports_no_tensorflow():
  code = ('import sys, deepmask_jax.convert, deepmask_jax.convert.__main__; '
          "sys.exit('tensorflow' in sys.modules)")
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO, check=False,
                          env=dict(os.environ, PYTHONPATH=str(REPO)))
  assert result.returncode == 0


def test_input_flag_detects_a_detectron_pkl(tmp_path):
  """--input (test_command_writes_a_model_directory uses its alias --t7)."""
  blobs, _ = embedmask_reference.caffe2_blobs(embedmask_reference.Geometry(),
                                              seed=0)
  path = tmp_path / 'weights.bin'  # The content decides, not the name.
  pth_writer.write_detectron_pkl(path, blobs)
  out = tmp_path / 'msra'
  result = _command('--input', str(path), '--out', str(out))
  assert result.returncode == 0, result.stderr
  assert 'resnet model' in result.stdout and 'stride in the 1x1' in result.stdout
  _, config = load_model(str(out))
  assert config.trunk.stride_in_1x1


def test_inspect_lists_the_tensors_of_a_pth(tmp_path):
  path = tmp_path / 'model.pth'
  pth_writer.write_legacy(path, {'model': {'module.a.weight': np.ones(
      (2, 3), np.float32)}, 'iteration': 7})
  stdout = io.StringIO()
  assert run(str(path), None, inspect=True, stdout=stdout) == 0
  assert stdout.getvalue().splitlines() == ['model.module.a.weight float32[2, 3]',
                                            'iteration int']
