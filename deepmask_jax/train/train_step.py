"""The train state and the pure, per-device train step.

`train_step` is written in pmap's programming model: it sees one device's
slice of the batch and averages gradients with `lax.pmean` over the named axis
'data'. deepmask_jax/train/parallel.py runs it under `jax.jit(jax.shard_map)`
(default) or `jax.pmap`; both give the same numbers.
"""

import functools
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax
from jax import lax

from deepmask_jax.train import losses
from deepmask_jax.train.optimizer import (GROUPS_PER_HEAD, PARAM_GROUPS,
                                          group_transform, learning_rate_fn,
                                          select)

AXIS = 'data'


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data, which is stateless.

  step: int32 scalar, the number of steps taken.
  params: the model's trainable tree; constants: folded BN (never trained).
  opt_state: {group name: optax state} (see optimizer.PARAM_GROUPS).
  rng: uint32[2] raw PRNG key; dropout keys derive from (rng, step, device).
  """
  step: jax.Array
  params: Any
  constants: Any
  opt_state: Any
  rng: jax.Array


def create_train_state(config, variables: dict) -> TrainState:
  """A fresh TrainState around initialised model `variables`."""
  tx = group_transform(config)
  params = flax.core.unfreeze(variables['params'])
  opt_state = {group: tx.init(select(params, keys))
               for group, keys in PARAM_GROUPS[config.model].items()}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    constants=flax.core.unfreeze(variables['constants']),
                    opt_state=opt_state,
                    rng=jax.random.PRNGKey(config.seed + 1))


def train_step(state: TrainState, batch: dict, *, model, kind: str, head: str,
               lr_fn, tx: optax.GradientTransformation, global_batch: int):
  """One SGD step on one device's share of a mask or score batch.

  Args:
    state: the replicated TrainState.
    batch: this device's slice: 'image' [b, wSz, wSz, 3] NHWC, plus
      'mask' [b, gSz, gSz] (mask batches) or 'score' [b] (score batches),
      labels in {-1, +1}.
    model: the Flax module; kind: 'deepmask' or 'sharpmask'.
    head: 'mask' or 'score': which objective and which parameter groups.
    lr_fn: step -> learning rate; tx: per-group update direction.
    global_batch: batch size over all devices (scales the mask objective).
  Returns (new state, metrics {'loss', 'lr'}), both identical on every device.
  """
  groups = GROUPS_PER_HEAD[kind][head]
  trainable_keys = [k for g in groups for k in PARAM_GROUPS[kind][g]]
  trainable = select(state.params, trainable_keys)
  device_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step),
                                  lax.axis_index(AXIS))

  def objective(trainable):
    params = {**state.params, **trainable}
    out = model.apply({'params': params, 'constants': state.constants},
                      batch['image'], train=True, rngs={'dropout': device_rng})
    if head == 'mask':
      return losses.mask_loss(out['mask'], batch['mask'], global_batch)
    return losses.score_loss(out['score'], batch['score'])

  loss, grads = jax.value_and_grad(objective)(trainable)
  grads = lax.pmean(grads, AXIS)
  loss = lax.pmean(loss, AXIS)
  lr = lr_fn(state.step)
  params, opt_state = dict(state.params), dict(state.opt_state)
  for group in groups:
    keys = PARAM_GROUPS[kind][group]
    direction, opt_state[group] = tx.update(
        select(grads, keys), state.opt_state[group], select(state.params, keys))
    params.update(optax.apply_updates(
        select(state.params, keys), jax.tree.map(lambda d: -lr * d, direction)))
  # Report the mask objective per sample, comparable across batch sizes.
  reported = loss / global_batch if head == 'mask' else loss
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state)
  return new_state, {'loss': reported, 'lr': lr}


def make_step_fns(config, model) -> dict:
  """{head: per-device step function} for the heads this model trains."""
  kind = config.model
  common = dict(model=model, kind=kind, lr_fn=learning_rate_fn(config),
                tx=group_transform(config), global_batch=config.batch_size)
  return {head: functools.partial(train_step, head=head, **common)
          for head in GROUPS_PER_HEAD[kind]}
