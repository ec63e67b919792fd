"""A family added by a package and one registry line (docs/adding_a_family.md)
trains, checkpoints, evaluates and predicts through the shared machinery."""

import numpy as np
import pytest

from deepmask_jax import evaluate, families
from deepmask_jax.train.trainer import train_and_evaluate
from tests.conftest import tiny_config
from tests.evaluation.conftest import write_tiny_split
from tests.families import toy


@pytest.fixture
def toy_registered(monkeypatch):
  """The toy family's registry line, for this test only."""
  monkeypatch.setitem(families.REGISTRY, 'toy',
                      ('tests.families.toy', 'ToyFamily'))
  monkeypatch.setattr(families, '_LOADED', {})


def test_toy_family_trains_checkpoints_evaluates_and_predicts(
    tmp_path, toy_registered):
  write_tiny_split(tmp_path / 'data', [(1, 'a'), (2, 'b')])
  config = tiny_config(**{
      'model': 'toy', 'batch_size': 8, 'eval_every_steps': 2,
      'checkpoint_every_steps': 2, 'log_every_steps': 1,
      'data.root': str(tmp_path / 'data'), 'data.val_json': 'val.json',
      'data.val_images': 'images'})
  workdir = str(tmp_path / 'work')
  figures = train_and_evaluate(config, workdir, families.get_family('toy'))
  assert np.isfinite(figures['loss'])

  results = evaluate.evaluate_checkpoint(config, workdir)
  assert results['step'] == 2
  assert results['num_images'] == 2

  predictor = families.predictor_from_path(workdir)
  image = (toy.toy_batch(config, 3)['image'][0] * 255).astype(np.uint8)
  (found,) = predictor.propose_encoded([image])
  assert (found.height, found.width) == image.shape[:2]
  assert len(found.rles) == 1
