"""SharpMask stage 2: only the refinement trains; the DeepMask stays frozen."""

import jax
import numpy as np

from deepmask_jax.families import bind, build_model, get_family
from deepmask_jax.models.store import load_model, save_model
from deepmask_jax.train.trainer import train_and_evaluate
from tests.conftest import tiny_config
from tests.train import fake_batches


def test_sharpmask_trains_refinement_only(tmp_path):
  deepmask_config = tiny_config(**{'patch.object_window': 64})
  deepmask = get_family('deepmask').init_variables(
      deepmask_config, build_model(deepmask_config))
  save_model(str(tmp_path / 'dm'), deepmask, deepmask_config)
  config = tiny_config(**{
      'model': 'sharpmask', 'deepmask_checkpoint': str(tmp_path / 'dm'),
      'patch.hfreq': 0.0, 'patch.label_size': 64, 'momentum': 0.0,
      'weight_decay': 0.0, 'batch_size': 8, 'schedule.total_steps': 3,
      'eval_every_steps': 3, 'checkpoint_every_steps': 3, 'validation_images': 8})
  family = bind(config)  # Patches of the DeepMask's geometry.
  figures = train_and_evaluate(family, str(tmp_path / 'sm'),
                               **fake_batches.sources(family.config))
  assert figures['patches'] == 8
  trained, trained_config = load_model(str(tmp_path / 'sm'))
  assert trained_config.model == 'sharpmask'
  for a, b in zip(jax.tree.leaves(trained['params']['deepmask']),
                  jax.tree.leaves(deepmask['params'])):
    np.testing.assert_array_equal(a, b)
  fresh = get_family('sharpmask').init_variables(
      trained_config, build_model(trained_config))
  moved = [not np.array_equal(a, b) for a, b in zip(
      jax.tree.leaves(trained['params']['refinement']),
      jax.tree.leaves(fresh['params']['refinement']))]
  assert all(moved)
