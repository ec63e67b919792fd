"""Parameter groups, update directions and learning-rate schedules.

A model family describes its optimisation as an `Optimization`: named groups
of parameters (path prefixes into the params tree), the groups each kind of
batch (head) updates, one optax update direction per group, and a step ->
learning-rate schedule. The train step keeps one optax state per group and
applies `-lr * direction` itself, because the learning rate depends on the
global step, not on a group's own update count.

EmbedMask uses maskrcnn-benchmark's solver: one group of every trainable
parameter, biases at twice the rate and without weight decay, and a constant
warmup before step decays (`warmup_multistep_schedule`, `bias_aware_sgd`).
DeepMask mirrors the reference's separate `optim.sgd` states for trunk, mask
head and score head: on a mask batch the score head's momentum neither
decays nor moves it. Momentum and coupled L2 weight decay follow Torch's
`optim.sgd` (dampening 0): v = m*v + (g + wd*p); p -= lr * v.
"""

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp
import optax
from flax import traverse_util


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


def epoch_schedule(config):
  """Step -> learning rate: piecewise constant, changing after the configured epochs.

  DeepMask: 1e-3, 5e-4 after epoch 50, 1e-4 after epoch 120. SharpMask's
  intended schedule is 1e-3 / 5e-4 (epoch 50) / 1e-4 (epoch 80); the
  reference never decays it (it overwrites the flag it tests), a bug we fix.
  """
  rates = tuple(config.learning_rates)
  boundaries = tuple(config.lr_boundaries_epochs)
  if len(rates) != len(boundaries) + 1:
    raise ValueError(f'learning_rates {rates} needs one more entry than '
                     f'lr_boundaries_epochs {boundaries}')
  steps = [int(e) * int(config.maxload) for e in boundaries]
  return optax.piecewise_constant_schedule(
      rates[0], {s: rates[i + 1] / rates[i] for i, s in enumerate(steps)})


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


def warmup_multistep_schedule(solver, batch_size: int):
  """Step -> lr of maskrcnn-benchmark's WarmupMultiStepLR (constant warmup).

  The base rate scales linearly with the batch (solver.base_lr at
  solver.reference_batch images). EmbedMask's trainer steps its scheduler
  after each update (its is_pytorch_1_1_0_or_later() returns True), so
  update t (0-based, our TrainState.step) uses the rate of scheduler epoch t:
  warmup_factor while t < warmup_iters (warmup_iters updates), then x gamma
  after each of solver.steps that t has reached.
  """
  base = float(solver.base_lr) * batch_size / float(solver.reference_batch)
  milestones = jnp.asarray(tuple(solver.steps), jnp.int32)

  def schedule(step):
    warmup = jnp.where(step < solver.warmup_iters,
                       float(solver.warmup_factor), 1.0)
    decays = jnp.sum(step >= milestones)
    return base * warmup * float(solver.gamma) ** decays
  return schedule


def _is_bias(params):
  """A tree of bools like `params`: True for leaves named 'bias'."""
  return jax.tree_util.tree_map_with_path(
      lambda path, _: str(getattr(path[-1], 'key', path[-1])) == 'bias',
      params)


def _is_not_bias(params):
  return jax.tree.map(lambda b: not b, _is_bias(params))


def bias_aware_transform(config) -> optax.GradientTransformation:
  """maskrcnn-benchmark's SGD groups: biases at solver.bias_lr_factor x the
  rate and solver.weight_decay_bias, everything else at config.weight_decay
  (Torch SGD: v = m*v + (g + wd*p); p -= lr_group * v, so the factor applies
  after the momentum). config.optimizer = 'adam' puts Adam's scaling in the
  momentum's place (for from-scratch demos, as DeepMask's)."""
  solver = config.solver
  parts = [optax.masked(optax.add_decayed_weights(config.weight_decay),
                        _is_not_bias)]
  if solver.weight_decay_bias:
    parts.append(optax.masked(
        optax.add_decayed_weights(solver.weight_decay_bias), _is_bias))
  parts += _step_scaling(config)
  parts.append(optax.masked(optax.scale(solver.bias_lr_factor), _is_bias))
  return optax.chain(*parts)
