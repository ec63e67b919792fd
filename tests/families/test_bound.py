"""families.bind: the config is resolved once, and every family method the
trainer and checkpoint evaluation call gets that resolved config."""

import ml_collections
import numpy as np
import pytest

from deepmask_jax import evaluate, families
from deepmask_jax.models.store import load_model
from deepmask_jax.train.trainer import train_and_evaluate
from tests.families import toy

# The Family methods that take the config first.
CONFIG_METHODS = ('build_model', 'init_variables', 'train_batches',
                  'validation_source', 'batch_keys', 'loss_fn', 'optimization',
                  'total_steps', 'validator', 'prediction_images', 'evaluate',
                  'predictor')


class CountingFamily(toy.ToyFamily):
  """The toy family counting its resolutions (which mark the config) and
  recording (method, config) of every call."""

  name = 'counting'
  resolutions = 0
  calls: list = []

  def resolve_config(self, config):
    CountingFamily.resolutions += 1
    config = ml_collections.ConfigDict(config.to_dict())
    config.resolved = True
    return config


def _recording(name: str):
  def method(self, config, *args, **kwargs):
    CountingFamily.calls.append((name, config))
    return getattr(toy.ToyFamily, name)(self, config, *args, **kwargs)
  return method


for _name in CONFIG_METHODS:
  setattr(CountingFamily, _name, _recording(_name))


@pytest.fixture
def counting(register_family, monkeypatch):
  """CountingFamily registered as 'counting', with nothing counted yet."""
  register_family('counting', __name__, 'CountingFamily')
  monkeypatch.setattr(CountingFamily, 'resolutions', 0)
  monkeypatch.setattr(CountingFamily, 'calls', [])


def test_bind_resolves_once_and_methods_get_the_resolved_config(
    tmp_path, counting):
  family = families.bind(toy.toy_config(tmp_path, model='counting'))
  model = family.build_model()
  family.loss_fn(model, 'mask')
  assert family.total_steps() == 2
  assert CountingFamily.resolutions == 1 and family.config.resolved
  assert [(name, config is family.config)
          for name, config in CountingFamily.calls] == [
              ('build_model', True), ('loss_fn', True), ('total_steps', True)]


def test_training_and_evaluation_use_the_config_resolved_once(
    tmp_path, counting):
  config = toy.toy_config(tmp_path / 'data', model='counting')
  workdir = str(tmp_path / 'work')
  figures = train_and_evaluate(families.bind(config), workdir)
  assert np.isfinite(figures['loss'])
  assert CountingFamily.resolutions == 1
  called = {name for name, _ in CountingFamily.calls}
  assert called >= set(CONFIG_METHODS) - {'evaluate'}
  assert all(c.get('resolved') for _, c in CountingFamily.calls)
  assert load_model(workdir)[1].resolved  # The checkpoint keeps it.

  CountingFamily.calls.clear()
  results = evaluate.evaluate_checkpoint(config, workdir)  # Not resolved.
  assert results['num_images'] == 2
  assert CountingFamily.resolutions == 1  # Saved configs are resolved.
  assert [name for name, _ in CountingFamily.calls][-2:] == ['evaluate',
                                                             'predictor']
  assert all(c.get('resolved') for _, c in CountingFamily.calls)
