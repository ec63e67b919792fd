"""Optimiser and learning-rate schedule (TrainerDeepMask / TrainerSharpMask).

The reference keeps a separate `optim.sgd` state per parameter group (trunk,
mask head, score head) and updates only the trunk and the head of the current
batch: on a mask batch the score head's momentum neither decays nor moves it.
We mirror that with one optax state per group. Momentum and coupled L2 weight
decay follow Torch's `optim.sgd` (dampening 0): v = m*v + (g + wd*p);
p -= lr * v. The learning rate depends on the global step, not on a group's
own update count, so it is applied outside the optax chain.
"""

import optax

# Top-level parameter keys of each trainable group, and the groups each kind
# of batch updates. SharpMask trains only its refinement (stage 2).
PARAM_GROUPS = {
    'deepmask': {'trunk': ('trunk', 'reduce', 'embed'),
                 'mask': ('mask_head',),
                 'score': ('score_hidden_layer', 'score_out')},
    'sharpmask': {'refinement': ('refinement',)},
}
GROUPS_PER_HEAD = {
    'deepmask': {'mask': ('trunk', 'mask'), 'score': ('trunk', 'score')},
    'sharpmask': {'mask': ('refinement',)},
}


def learning_rate_fn(config):
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


def group_transform(config) -> optax.GradientTransformation:
  """Per-group update direction (before the learning rate).

  'sgd' (the reference): coupled weight decay, then heavy-ball momentum.
  'adam': coupled weight decay, then Adam's scaling. Only for training a trunk
  from scratch (the demo): without ImageNet weights or batch norm, plain SGD
  leaves such a trunk stuck predicting the average mask.
  """
  parts = []
  if config.weight_decay:
    parts.append(optax.add_decayed_weights(config.weight_decay))
  if config.optimizer == 'adam':
    parts.append(optax.scale_by_adam())
  elif config.optimizer != 'sgd':
    raise ValueError(f"config.optimizer must be 'sgd' or 'adam', got "
                     f'{config.optimizer!r}')
  elif config.momentum:
    parts.append(optax.trace(decay=config.momentum, nesterov=False))
  # Plain SGD (SharpMask's recipe: no momentum, no decay) is the gradient
  # itself; optax.chain() of nothing is an error.
  return optax.chain(*parts) if parts else optax.identity()


def select(params: dict, keys) -> dict:
  """The sub-dict of `params` with the given top-level keys."""
  return {k: params[k] for k in keys}
