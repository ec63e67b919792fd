"""Test setup shared by the whole suite.

Eight virtual CPU devices, so the data-parallel tests run on any machine: the
flag must be set before JAX initialises its backends, hence here.
"""

import os
import tempfile

os.environ.setdefault('XLA_FLAGS', '--xla_force_host_platform_device_count=8')
os.environ.setdefault('TF_CPP_MIN_LOG_LEVEL', '2')
# Many tests (and the subprocesses they start, which inherit the environment)
# compile the same tiny programs again; XLA's persistent cache saves about 40%
# of the CPU time of the training tests. It is only a cache: keyed by the
# program and the compiler flags, so it never changes a result.
os.environ.setdefault('JAX_COMPILATION_CACHE_DIR', os.path.join(
    tempfile.gettempdir(), 'deepmask_jax_test_xla_cache'))
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS', '0')
os.environ.setdefault('JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES', '0')

import pathlib  # pylint: disable=g-import-not-at-top,wrong-import-position

import pytest  # pylint: disable=g-import-not-at-top,wrong-import-position

# Dataset fixtures (built TFDS datasets, small COCO folders) for every folder:
# the shared data tests and the families' input pipelines both use them.
pytest_plugins = ('tests.data.fixtures',)

REPO = pathlib.Path(__file__).resolve().parents[1]
COCO_TINY = REPO.parent / 'shared' / 'data' / 'coco_tiny'


def with_overrides(config, overrides: dict):
  """`config` with dotted fields ('patch.hfreq') set to the given values."""
  for key, value in overrides.items():
    node = config
    *parents, leaf = key.split('.')
    for name in parents:
      node = node[name]
    node[leaf] = value
  return config


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
  return with_overrides(config, overrides)


def max_difference(a, b) -> float:
  """Largest absolute difference between the leaves of two trees."""
  import jax  # pylint: disable=g-import-not-at-top
  import numpy as np  # pylint: disable=g-import-not-at-top
  return max(float(np.max(np.abs(x - y)))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope='session')
def eight_devices():
  """Skips unless 8 (forced host) devices exist."""
  import jax  # pylint: disable=g-import-not-at-top
  if jax.device_count() < 8:
    pytest.skip('needs XLA_FLAGS=--xla_force_host_platform_device_count=8 '
                'set before JAX starts (tests/conftest.py does this)')


@pytest.fixture(scope='session')
def coco_tiny():
  """Path of ../shared/data/coco_tiny, or a skip saying it is absent."""
  if not (COCO_TINY / 'annotations' / 'instances_val2017.json').exists():
    pytest.skip(f'coco_tiny not found at {COCO_TINY} (the shared test data '
                'sits beside the repository as ../shared/data/coco_tiny)')
  return COCO_TINY


def tiny_model(kind: str, seed: int = 0, **overrides):
  """(model, variables, config) of a tiny, randomly initialised model."""
  import jax  # pylint: disable=g-import-not-at-top
  import jax.numpy as jnp  # pylint: disable=g-import-not-at-top
  from deepmask_jax.families import build_model  # pylint: disable=g-import-not-at-top
  config = tiny_config(model=kind, **overrides)
  model = build_model(config)
  # rbg keys: the init compiles about three times faster than threefry's.
  variables = model.init(jax.random.key(seed, impl='rbg'),
                         jnp.zeros((1, 192, 192, 3)))
  return model, variables, config


@pytest.fixture(scope='session')
def tiny_deepmask():
  """A tiny DeepMask (model, variables, config) for inference tests."""
  return tiny_model('deepmask')


@pytest.fixture(scope='session')
def tiny_sharpmask():
  """A tiny SharpMask (model, variables, config) for inference tests."""
  return tiny_model('sharpmask')
