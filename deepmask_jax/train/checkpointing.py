"""Training checkpoints with orbax: keep the last K and the best by validation.

Layout: WORKDIR/checkpoints/<step>/{state,config}. `state` is the TrainState
(step, params, constants, optimiser state, RNG); the data stream needs no
state because batch t is a pure function of (seed, t). `config` is the JSON
config, so a checkpoint alone rebuilds its model (deepmask_jax.models.store).
Checkpoints carrying validation metrics compete for the "best" slot by
'iou_0.7' (the reference picks bestmodel.t7 by the IoU >= 0.7 share).
"""

import json
import os

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from deepmask_jax.models.store import TRAIN_CHECKPOINTS, config_from_json

BEST_METRIC = 'iou_0.7'


def rank(metrics: dict) -> tuple:
  """Orders validated checkpoints: IoU >= 0.7 share, then mean IoU on ties."""
  return (metrics[BEST_METRIC], metrics.get('mean', 0.0))


class Checkpoints:
  """Saves and restores TrainStates under WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep: int = 3):
    policy = checkpoint_managers.AnyPreservationPolicy(policies=[
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(
            get_metric_fn=rank, n=1,
            keep_checkpoints_without_metrics=False),
    ])
    self.directory = os.path.join(os.path.abspath(workdir), TRAIN_CHECKPOINTS)
    self.manager = ocp.CheckpointManager(
        self.directory,
        # best_fn makes orbax store the metrics passed to save(); which
        # checkpoints stay is decided by `policy` alone.
        options=ocp.CheckpointManagerOptions(
            preservation_policy=policy, best_fn=lambda m: m[BEST_METRIC],
            keep_checkpoints_without_metrics=True,
            cleanup_tmp_directories=True),
        item_names=('state', 'config'))

  def latest_step(self):
    return self.manager.latest_step()

  def best_step(self):
    """The kept step with the highest 'iou_0.7', or None before any validation."""
    scored = [(rank(m), s) for s in self.manager.all_steps()
              if (m := self.manager.metrics(s)) and BEST_METRIC in m]
    return max(scored)[1] if scored else None

  def save(self, state, config, metrics: dict | None = None) -> None:
    """Saves asynchronously at state.step; `metrics` ranks it for 'best'."""
    step = int(state.step)
    self.manager.save(
        step, metrics=metrics,
        args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                config=ocp.args.JsonSave(config.to_dict())),
        force=True)

  def restore(self, abstract_state, step: int | None = None):
    """Restores a TrainState shaped (and sharded) like `abstract_state`."""
    step = self.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored['state']

  def wait(self) -> None:
    self.manager.wait_until_finished()

  def close(self) -> None:
    self.manager.close()


def load_latest_variables(workdir: str, step: int | None = None):
  """Model variables and config from a training workdir (no optimiser state).

  Returns ({'params', 'constants'} of numpy arrays, ConfigDict). `step`
  defaults to the best validated checkpoint, else the latest.
  """
  checkpoints = Checkpoints(workdir)
  try:
    if step is None:
      step = checkpoints.best_step() or checkpoints.latest_step()
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {checkpoints.directory}')
    restored = checkpoints.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(), config=ocp.args.JsonRestore()))
  finally:
    checkpoints.close()
  state, config = restored['state'], restored['config']
  config = config_from_json(json.dumps(config))
  return {'params': state['params'], 'constants': state['constants']}, config
