"""Losses and optimiser groups: the reference objective and Torch's optim.sgd."""

import jax.numpy as jnp
import numpy as np
import optax

from deepmask_jax.families.deepmask import losses
from deepmask_jax.train.optimizer import sgd_or_adam, step_schedule
from tests.conftest import tiny_config


def test_soft_margin_is_log_one_plus_exp_minus_yf():
  logits = jnp.array([2.0, -1.0, 0.0, 30.0])
  labels = jnp.array([1.0, 1.0, -1.0, -1.0])
  expected = np.log1p(np.exp(-np.array(labels) * np.array(logits)))
  np.testing.assert_allclose(losses.soft_margin(logits, labels), expected,
                             rtol=1e-6)


def test_score_weighs_one_over_batch_against_masks():
  """Mask: per-sample pixel mean summed over the batch; score: batch mean."""
  batch = 32
  mask_logits = jnp.zeros((4, 8, 8))  # A device's 4 of the 32 samples.
  labels = jnp.ones((4, 8, 8))
  per_sample = np.log(2.0)
  # The mean over 8 devices of this device share is the sum over 32 samples.
  assert np.isclose(losses.mask_loss(mask_logits, labels, batch),
                    batch * per_sample)
  assert np.isclose(losses.score_loss(jnp.zeros(4), jnp.ones(4)), per_sample)


def test_sgd_group_transform_matches_torch_optim_sgd():
  """v = m*v + (g + wd*p); the update direction is v (lr applied outside)."""
  config = tiny_config(momentum=0.9, weight_decay=0.1)
  tx = sgd_or_adam(config)
  params = {'w': jnp.array([1.0])}
  state = tx.init(params)
  grad = {'w': jnp.array([0.5])}
  first, state = tx.update(grad, state, params)
  second, _ = tx.update(grad, state, params)
  np.testing.assert_allclose(first['w'], [0.6])
  np.testing.assert_allclose(second['w'], [0.9 * 0.6 + 0.6])


def test_plain_sgd_without_momentum_or_decay_is_the_gradient():
  config = tiny_config(momentum=0.0, weight_decay=0.0)
  tx = sgd_or_adam(config)
  params = {'w': jnp.array([1.0])}
  update, _ = tx.update({'w': jnp.array([0.25])}, tx.init(params), params)
  np.testing.assert_allclose(update['w'], [0.25])


def test_learning_rate_steps_at_the_configured_boundaries():
  config = tiny_config(**{'schedule.learning_rates': (1e-3, 5e-4, 1e-4),
                          'schedule.boundaries': (500, 1200)})
  schedule = step_schedule(config.schedule, config.batch_size)
  assert np.isclose(schedule(0), 1e-3) and np.isclose(schedule(499), 1e-3)
  assert np.isclose(schedule(500), 5e-4) and np.isclose(schedule(1199), 5e-4)
  assert np.isclose(schedule(1200), 1e-4)
  assert isinstance(sgd_or_adam(config), optax.GradientTransformation)
