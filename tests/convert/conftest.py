"""Fixtures of the converter tests: writing module trees as .t7 files."""

import pytest

from deepmask_jax.testing.t7_writer import write_t7


@pytest.fixture
def write_file(tmp_path):
  """write_file(tree, name='model.t7', cuda=True) -> path of the written .t7."""

  def write(tree, name='model.t7', cuda=True):
    path = tmp_path / name
    write_t7(path, tree, cuda=cuda)
    return str(path)

  return write
