"""Tiny DeepMask and SharpMask models for the inference tests."""

import jax
import jax.numpy as jnp
import pytest

from deepmask_jax.families import build_model
from tests.conftest import tiny_config


def tiny_model(kind: str, seed: int = 0, **overrides):
  """(model, variables, config) of a tiny, randomly initialised model."""
  config = tiny_config(model=kind, **overrides)
  model = build_model(config)
  # rbg keys: the init compiles about three times faster than threefry's.
  variables = model.init(jax.random.key(seed, impl='rbg'),
                         jnp.zeros((1, 192, 192, 3)))
  return model, variables, config


@pytest.fixture(scope='session')
def tiny_deepmask():
  return tiny_model('deepmask')


@pytest.fixture(scope='session')
def tiny_sharpmask():
  return tiny_model('sharpmask')
