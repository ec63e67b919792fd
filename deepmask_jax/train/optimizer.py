"""Parameter groups, update directions and learning-rate schedules.

A model family describes its optimisation as an `Optimization`: named groups
of parameters (path prefixes into the params tree), the groups each kind of
batch (head) updates, one optax update direction per group, and a step ->
learning-rate schedule. The train step keeps one optax state per group and
applies `-lr * direction` itself, because the learning rate depends on the
global step, not on a group's own update count.

Every family's learning rate comes from `config.schedule` (`step_schedule`):
rates per interval of steps, an optional constant warmup and linear batch
scaling. EmbedMask uses maskrcnn-benchmark's solver: one group of every
trainable parameter, biases at twice the rate and without weight decay
(`bias_aware_transform`), warmup before the step decays.
DeepMask mirrors the reference's separate `optim.sgd` states for trunk, mask
head and score head: on a mask batch the score head's momentum neither
decays nor moves it. Momentum and coupled L2 weight decay follow Torch's
`optim.sgd` (dampening 0): v = m*v + (g + wd*p); p -= lr * v.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import traverse_util

from deepmask_jax.errors import InputError


@dataclasses.dataclass(frozen=True)
class Optimization:
  """How a family's parameters are trained.

  groups: {group: parameter path prefixes}, e.g. ('trunk/layer2', 'fpn').
  heads: {batch head: the groups a batch of that head updates}.
  transform: per-group update direction (before the learning rate).
  learning_rate: step -> learning rate.
  """
  groups: dict
  heads: dict
  transform: optax.GradientTransformation
  learning_rate: Callable


def _step_scaling(config) -> list:
  """Momentum ('sgd', if config.momentum) or Adam's scaling ('adam')."""
  if config.optimizer == 'adam':
    return [optax.scale_by_adam()]
  if config.optimizer != 'sgd':
    raise ValueError(f"config.optimizer must be 'sgd' or 'adam', got "
                     f'{config.optimizer!r}')
  if config.momentum:
    return [optax.trace(decay=config.momentum, nesterov=False)]
  return []


def sgd_or_adam(config) -> optax.GradientTransformation:
  """Per-group update direction (before the learning rate).

  'sgd' (the reference): coupled weight decay, then heavy-ball momentum.
  'adam': coupled weight decay, then Adam's scaling. Only for training a trunk
  from scratch (the demo): without ImageNet weights or batch norm, plain SGD
  leaves such a trunk stuck predicting the average mask.
  """
  parts = []
  if config.weight_decay:
    parts.append(optax.add_decayed_weights(config.weight_decay))
  parts += _step_scaling(config)
  # Plain SGD (SharpMask's recipe: no momentum, no decay) is the gradient
  # itself; optax.chain() of nothing is an error.
  return optax.chain(*parts) if parts else optax.identity()


def _matches(path: str, prefixes) -> bool:
  return any(path == p or path.startswith(p + '/') for p in prefixes)


def select(params: dict, prefixes) -> dict:
  """The nested sub-dict of `params` under the given path prefixes ('a/b')."""
  flat = traverse_util.flatten_dict(params, sep='/')
  missing = [p for p in prefixes if not any(_matches(k, [p]) for k in flat)]
  if missing:
    raise KeyError(f'no parameters under {missing}')
  return traverse_util.unflatten_dict(
      {k: v for k, v in flat.items() if _matches(k, prefixes)}, sep='/')


def merge(params: dict, part: dict) -> dict:
  """`params` with the leaves of the nested `part` replaced."""
  flat = traverse_util.flatten_dict(params, sep='/')
  flat.update(traverse_util.flatten_dict(part, sep='/'))
  return traverse_util.unflatten_dict(flat, sep='/')


def check_schedule(schedule) -> None:
  """InputError (one line) unless `config.schedule` describes a schedule:
  one more rate than boundaries, boundaries increasing from step 1."""
  rates, boundaries = tuple(schedule.learning_rates), tuple(schedule.boundaries)
  if len(rates) != len(boundaries) + 1:
    raise InputError(f'config.schedule.learning_rates {rates} needs one more '
                     f'entry than config.schedule.boundaries {boundaries} '
                     '(one rate per interval)')
  if any(b <= a for a, b in zip((0,) + boundaries, boundaries)):
    raise InputError(f'config.schedule.boundaries {boundaries} must be '
                     'increasing steps above 0')
  if int(schedule.reference_batch) < 0 or int(schedule.warmup_steps) < 0:
    raise InputError('config.schedule.reference_batch and warmup_steps must be '
                     f'>= 0, got {schedule.reference_batch} and '
                     f'{schedule.warmup_steps}')


def step_schedule(schedule, batch_size: int):
  """Step -> learning rate of `config.schedule`, for every family.

  Update t (0-based, our TrainState.step) runs at learning_rates[k], k the
  number of boundaries <= t (the next rate starts at its boundary step), x
  warmup_factor while t < warmup_steps (maskrcnn-benchmark's constant
  WarmupMultiStepLR: EmbedMask's trainer steps its scheduler after each
  update, so update t has scheduler epoch t), x batch_size / reference_batch
  unless reference_batch is 0. DeepMask: no warmup, no scaling (the
  reference's 1e-3 / 5e-4 / 1e-4 at epochs 50 / 120).

  float32 arithmetic as the earlier per-family schedules did it (optax's
  piecewise_constant_schedule, base x warmup x gamma^k): the first rate times
  the float32 product of each interval's rate over the one before, so every
  step's rate is bit-identical to theirs (tests/train/test_optimizer.py).
  """
  check_schedule(schedule)
  rates = [float(r) for r in schedule.learning_rates]
  first = rates[0]
  if schedule.reference_batch:
    first = first * batch_size / float(schedule.reference_batch)
  factors = [np.float32(1.0)]
  for before, after in zip(rates, rates[1:]):
    factors.append(np.float32(factors[-1] * np.float32(after / before)))
  factors = jnp.asarray(factors, jnp.float32)
  boundaries = jnp.asarray(tuple(schedule.boundaries), jnp.int32)
  warmup_steps = int(schedule.warmup_steps)
  warmup_factor = float(schedule.warmup_factor)

  def learning_rate(step):
    warmup = jnp.where(step < warmup_steps, warmup_factor, 1.0)
    return first * warmup * factors[jnp.sum(step >= boundaries)]
  return learning_rate


def _is_bias(params):
  """A tree of bools like `params`: True for leaves named 'bias'."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: str(getattr(path[-1], 'key', path[-1])) == 'bias',
      params)


def _is_not_bias(params):
  return jax.tree.map(lambda b: not b, _is_bias(params))


def bias_aware_transform(config, bias_lr_factor: float,
                         weight_decay_bias: float) -> optax.GradientTransformation:
  """maskrcnn-benchmark's SGD groups: biases at bias_lr_factor x the rate and
  weight_decay_bias, everything else at config.weight_decay (Torch SGD:
  v = m*v + (g + wd*p); p -= lr_group * v, so the factor applies after the
  momentum). config.optimizer = 'adam' puts Adam's scaling in the momentum's
  place (for from-scratch demos, as DeepMask's)."""
  parts = [optax.masked(optax.add_decayed_weights(config.weight_decay),
                        _is_not_bias)]
  if weight_decay_bias:
    parts.append(optax.masked(
        optax.add_decayed_weights(weight_decay_bias), _is_bias))
  parts += _step_scaling(config)
  parts.append(optax.masked(optax.scale(bias_lr_factor), _is_bias))
  return optax.chain(*parts)
