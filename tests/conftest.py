"""Test setup shared by the whole suite.

Eight virtual CPU devices, so the data-parallel tests run on any machine: the
flag must be set before JAX initialises its backends, hence here.
"""

import os

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')

import pathlib  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

REPO = pathlib.Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / 'shared' / 'data' / 'coco_tiny'


def tiny_config(**overrides):
  """The schema with a tiny trunk and heads, for fast tests."""
  from deepmask_jax.config_schema import get_config  # pylint: disable=g-import-not-at-top
  config = get_config()
  config.trunk.stem_width = 8
  config.trunk.widths = (4, 8, 8)
  config.trunk.depths = (1, 1, 1)
  config.head.feature_channels = 8
  config.head.embedding = 16
  config.head.score_hidden = 16
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


@pytest.fixture(scope='session')
def coco_tiny():
  """Path of ../shared/data/coco_tiny, or a skip saying it is absent."""
  if not (COCO_TINY / 'annotations' / 'instances_val2017.json').exists():
    pytest.skip(f'coco_tiny not found at {COCO_TINY} (the shared test data '
                'sits beside the repository as ../shared/data/coco_tiny)')
  return COCO_TINY
