"""A family added by a package and one registry line (docs/adding_a_family.md)
trains, checkpoints, evaluates and predicts through the shared machinery."""

import numpy as np

from deepmask_jax import evaluate, families
from deepmask_jax.train.trainer import train_and_evaluate
from tests.families import toy


def test_toy_family_trains_checkpoints_evaluates_and_predicts(
    tmp_path, register_family):
  register_family('toy', 'tests.families.toy', 'ToyFamily')
  config = toy.toy_config(tmp_path / 'data')
  workdir = str(tmp_path / 'work')
  figures = train_and_evaluate(families.bind(config), workdir)
  assert np.isfinite(figures['loss'])

  results = evaluate.evaluate_checkpoint(config, workdir)
  assert results['step'] == 2
  assert results['num_images'] == 2

  predictor = families.predictor_from_path(workdir)
  image = (toy.toy_batch(config, 3)['image'][0] * 255).astype(np.uint8)
  (found,) = predictor.propose_encoded([image])
  assert (found.height, found.width) == image.shape[:2]
  assert len(found.rles) == 1
