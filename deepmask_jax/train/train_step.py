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

from deepmask_jax.train.optimizer import Optimization, merge, select

AXIS = 'data'


@flax.struct.dataclass
class TrainState:
  """Everything a resumed run needs besides the data, which is stateless.

  step: int32 scalar, the number of steps taken.
  params: the model's trainable tree; constants: folded BN (never trained).
  opt_state: {group name: optax state} (see optimizer.Optimization).
  rng: uint32[2] raw PRNG key; dropout keys derive from (rng, step, device).
  """
  step: jax.Array
  params: Any
  constants: Any
  opt_state: Any
  rng: jax.Array


def create_train_state(config, variables: dict,
                       optimization: Optimization) -> TrainState:
  """A fresh TrainState around initialised model `variables`."""
  params = flax.core.unfreeze(variables['params'])
  opt_state = {group: optimization.transform.init(select(params, prefixes))
               for group, prefixes in optimization.groups.items()}
  return TrainState(step=jnp.zeros((), jnp.int32), params=params,
                    constants=flax.core.unfreeze(variables.get('constants', {})),
                    opt_state=opt_state,
                    rng=jax.random.PRNGKey(config.seed + 1))


def train_step(state: TrainState, batch: dict, *, loss_fn, groups,
               optimization: Optimization):
  """One step on one device's share of a batch.

  Args:
    state: the replicated TrainState.
    batch: this device's slice of the batch (layout: the family's).
    loss_fn: (params, constants, batch, rng) -> (objective, metrics): this
      device's objective, whose mean over devices is the global one (it may
      use collectives over AXIS), and scalar metrics including 'loss'.
    groups: the parameter groups this batch updates (optimization.groups).
    optimization: groups, update direction and learning rate.
  Returns (new state, metrics incl. 'lr'), both identical on every device.
  """
  prefixes = [p for g in groups for p in optimization.groups[g]]
  trainable = select(state.params, prefixes)
  device_rng = jax.random.fold_in(jax.random.fold_in(state.rng, state.step),
                                  lax.axis_index(AXIS))

  def objective(trainable):
    params = merge(state.params, trainable)
    return loss_fn(params, state.constants, batch, device_rng)

  (_, metrics), grads = jax.value_and_grad(objective, has_aux=True)(trainable)
  grads = lax.pmean(grads, AXIS)
  metrics = lax.pmean(metrics, AXIS)
  lr = optimization.learning_rate(state.step)
  params, opt_state = state.params, dict(state.opt_state)
  for group in groups:
    keys = optimization.groups[group]
    current = select(state.params, keys)
    direction, opt_state[group] = optimization.transform.update(
        select(grads, keys), state.opt_state[group], current)
    params = merge(params, optax.apply_updates(
        current, jax.tree.map(lambda d: -lr * d, direction)))
  new_state = state.replace(step=state.step + 1, params=params,
                            opt_state=opt_state)
  return new_state, dict(metrics, lr=lr)


def make_step_fns(optimization: Optimization, loss_fns: dict) -> dict:
  """{head: per-device step function} from {head: loss_fn}."""
  return {head: functools.partial(train_step, loss_fn=loss_fns[head],
                                  groups=optimization.heads[head],
                                  optimization=optimization)
          for head in optimization.heads}
