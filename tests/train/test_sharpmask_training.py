"""SharpMask stage 2: only the refinement trains; the DeepMask stays frozen."""

import jax
import numpy as np

from deepmask_jax.models import model_from_config
from deepmask_jax.models.store import load_model, save_model
from deepmask_jax.train.initialization import initial_variables
from deepmask_jax.train.trainer import train_and_evaluate
from tests.conftest import tiny_config
from tests.train import fake_batches


def test_sharpmask_trains_refinement_only(tmp_path):
  deepmask_config = tiny_config(**{'patch.object_window': 64})
  deepmask = initial_variables(deepmask_config,
                               model_from_config(deepmask_config))
  save_model(str(tmp_path / 'dm'), deepmask, deepmask_config)
  config = tiny_config(**{
      'model': 'sharpmask', 'deepmask_checkpoint': str(tmp_path / 'dm'),
      'patch.hfreq': 0.0, 'patch.label_size': 64, 'momentum': 0.0,
      'weight_decay': 0.0, 'batch_size': 8, 'maxload': 3, 'num_epochs': 1,
      'eval_every_steps': 3, 'checkpoint_every_steps': 3, 'eval_batches': 1})
  figures = train_and_evaluate(config, str(tmp_path / 'sm'),
                               train_source=fake_batches.patch_batches,
                               eval_source=fake_batches.eval_batches)
  assert figures['patches'] == 8
  trained, trained_config = load_model(str(tmp_path / 'sm'))
  assert trained_config.model == 'sharpmask'
  for a, b in zip(jax.tree.leaves(trained['params']['deepmask']),
                  jax.tree.leaves(deepmask['params'])):
    np.testing.assert_array_equal(a, b)
  fresh = initial_variables(trained_config, model_from_config(trained_config))
  moved = [not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(trained['params']['refinement']),
      jax.tree.leaves(fresh['params']['refinement']))]
  assert all(moved)
