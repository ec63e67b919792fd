"""Fixtures of the family tests."""

import pytest

from deepmask_jax import families


@pytest.fixture
def register_family(monkeypatch):
  """register(name, module, cls): a registry line for this test only."""
  monkeypatch.setattr(families, '_LOADED', {})

  def register(name: str, module: str, cls: str) -> None:
    monkeypatch.setitem(families.REGISTRY, name, (module, cls))
  return register
