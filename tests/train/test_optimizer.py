"""The learning-rate schedule of every family: `step_schedule` of config.schedule."""

import copy
import math

import jax.numpy as jnp
import numpy as np
import optax
import pytest

from deepmask_jax.config_renames import apply_renames
from deepmask_jax.config_schema import sibling_config
from deepmask_jax.errors import InputError
from deepmask_jax.train.optimizer import step_schedule
from tests.conftest import REPO, tiny_config, with_overrides

# The schedule each config file set before config.schedule, in the old names.
REFERENCE = {'maxload': 4000, 'num_epochs': 300,
             'learning_rates': (1e-3, 5e-4, 1e-4),
             'lr_boundaries_epochs': (50, 120)}
OLD_NAMES = {
    'deepmask': REFERENCE,
    'sharpmask': dict(REFERENCE, lr_boundaries_epochs=(50, 80)),
    'demo': {'maxload': 500, 'num_epochs': 8,
             'learning_rates': (2e-3, 1e-3, 2.5e-4),
             'lr_boundaries_epochs': (6, 7)},
    'demo_sharpmask': {'maxload': 500, 'num_epochs': 3,
                       'learning_rates': (5e-4, 2.5e-4, 1e-4),
                       'lr_boundaries_epochs': (2, 3)},
    'embedmask': {'solver.base_lr': 0.01, 'solver.reference_batch': 16,
                  'solver.warmup_factor': 1.0 / 3, 'solver.warmup_iters': 500,
                  'solver.steps': (60000, 80000), 'solver.gamma': 0.1,
                  'solver.max_iter': 90000},
    'demo_embedmask': {'solver.base_lr': 2e-3, 'solver.reference_batch': 4,
                       'solver.warmup_factor': 1.0 / 3,
                       'solver.warmup_iters': 200,
                       'solver.steps': (3500,), 'solver.gamma': 0.1,
                       'solver.max_iter': 4200},
}


def old_epoch_schedule(old: dict):
  """DeepMask's schedule before config.schedule (optimizer.epoch_schedule)."""
  rates = tuple(old['learning_rates'])
  steps = [int(e) * int(old['maxload']) for e in old['lr_boundaries_epochs']]
  return optax.piecewise_constant_schedule(
      rates[0], {s: rates[i + 1] / rates[i] for i, s in enumerate(steps)})


def old_warmup_multistep_schedule(old: dict, batch_size: int):
  """EmbedMask's schedule before config.schedule (warmup_multistep_schedule)."""
  base = (float(old['solver.base_lr']) * batch_size
          / float(old['solver.reference_batch']))
  milestones = jnp.asarray(tuple(old['solver.steps']), jnp.int32)

  def schedule(step):
    warmup = jnp.where(step < old['solver.warmup_iters'],
                       float(old['solver.warmup_factor']), 1.0)
    decays = jnp.sum(step >= milestones)
    return base * warmup * float(old['solver.gamma']) ** decays
  return schedule


def old_schedule(old: dict, batch_size: int):
  """(step -> lr, total steps) as the old fields gave them."""
  if 'maxload' in old:
    return old_epoch_schedule(old), old['num_epochs'] * old['maxload']
  return (old_warmup_multistep_schedule(old, batch_size),
          old['solver.max_iter'])


def stored_with_old_names(tree: dict) -> dict:
  """A config dict as a checkpoint or model directory stored it before
  config.schedule: its schedule under both families' old names (the old
  schema wrote every field), the bias fields in config.solver."""
  tree = copy.deepcopy(tree)
  schedule, embedmask = tree.pop('schedule'), tree['embedmask']
  rates, boundaries = list(schedule['learning_rates']), list(schedule['boundaries'])
  total = schedule['total_steps']
  epoch = schedule.get('epoch_steps', 0)  # The config's old maxload.
  if not epoch or any(s % epoch for s in (total, *boundaries)):
    epoch = math.gcd(total, *boundaries)
  tree.update(maxload=epoch, num_epochs=total // epoch, learning_rates=rates,
              lr_boundaries_epochs=[b // epoch for b in boundaries])
  tree['solver'] = {
      'base_lr': rates[0], 'gamma': rates[1] / rates[0] if boundaries else 0.1,
      'steps': boundaries, 'max_iter': total,
      'warmup_iters': schedule['warmup_steps'],
      'warmup_factor': schedule['warmup_factor'],
      'reference_batch': schedule['reference_batch'],
      'bias_lr_factor': embedmask.pop('bias_lr_factor'),
      'weight_decay_bias': embedmask.pop('weight_decay_bias')}
  return tree


def config_file(name: str):
  return sibling_config(str(REPO / 'configs' / 'default.py'), name)


def with_old_names(name: str):
  """The config file with its schedule set again through the old names."""
  config = with_overrides(config_file(name), OLD_NAMES[name])
  config.schedule = config_file('default').schedule  # Forget the file's.
  return apply_renames(config)


def change_steps(schedule) -> list:
  """The steps on either side of every change of rate, and the last step."""
  edges = (int(schedule.warmup_steps), *schedule.boundaries)
  return sorted({0, int(schedule.total_steps) - 1}
                | {s + d for s in edges for d in (-1, 0) if s + d >= 0})


def rates_at(schedule, steps) -> np.ndarray:
  return np.array([schedule(jnp.asarray(s, jnp.int32)) for s in steps],
                  np.float32)


@pytest.mark.parametrize('batch', [None, 2, 8], ids=['file batch', 'batch 2',
                                                      'batch 8'])
@pytest.mark.parametrize('source', ['file', 'old names'])
@pytest.mark.parametrize('name', OLD_NAMES)
def test_every_rate_change_is_bit_identical_to_the_old_schedules(
    name, source, batch):
  # float32 products in the old schedules' order (optimizer.step_schedule),
  # so equal bits by construction: the demos train exactly as before.
  config = config_file(name) if source == 'file' else with_old_names(name)
  batch = batch or config.batch_size
  old, total = old_schedule(OLD_NAMES[name], batch)
  assert config.schedule.total_steps == total
  steps = change_steps(config.schedule)
  new = step_schedule(config.schedule, batch)
  np.testing.assert_array_equal(rates_at(new, steps), rates_at(old, steps))


def test_warmup_then_each_rate_from_its_boundary_scaled_by_the_batch():
  config = tiny_config(batch_size=8, **{
      'schedule.learning_rates': (0.4, 0.2), 'schedule.boundaries': (5,),
      'schedule.warmup_steps': 2, 'schedule.warmup_factor': 0.5,
      'schedule.reference_batch': 16})
  rates = rates_at(step_schedule(config.schedule, 8), range(7))
  np.testing.assert_allclose(rates, [0.1, 0.1, 0.2, 0.2, 0.2, 0.1, 0.1])


def test_one_rate_without_boundaries_is_constant():
  config = tiny_config(**{'schedule.learning_rates': (1e-3,),
                          'schedule.boundaries': ()})
  rates = rates_at(step_schedule(config.schedule, 32), (0, 10**6))
  np.testing.assert_allclose(rates, [1e-3, 1e-3])


@pytest.mark.parametrize('field,value,words', [
    ('schedule.boundaries', (10,), 'one more entry'),
    ('schedule.boundaries', (20, 10), 'increasing'),
    ('schedule.reference_batch', -1, '>= 0'),
])
def test_a_schedule_that_cannot_be_is_one_line(field, value, words):
  config = tiny_config(**{field: value})
  with pytest.raises(InputError, match=words) as error:
    step_schedule(config.schedule, 32)
  assert '\n' not in str(error.value)
