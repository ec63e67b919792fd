"""Training checkpoints with orbax: keep the last K and the best by validation.

Layout: WORKDIR/checkpoints/<step>/{state,config}. `state` is the TrainState
(step, params, constants, optimiser state, RNG); the data stream needs no
state because batch t is a pure function of (seed, t). `config` is the JSON
config, so a checkpoint alone rebuilds its model (deepmask_jax.models.store).
Checkpoints carrying validation metrics compete for the "best" slot by the
ranking tuple their model family computes from the figures (DeepMask: the
IoU >= 0.7 share, as the reference picks bestmodel.t7; EmbedMask: mask AP),
stored with the metrics under store.RANK. Reading a workdir's model is
models/store.py's job.
"""

import os

import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from deepmask_jax.models import store


class Checkpoints:
  """Saves and restores TrainStates under WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep: int = 3):
    policy = checkpoint_managers.AnyPreservationPolicy(policies=[
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(
            get_metric_fn=lambda m: tuple(m[store.RANK]), n=1,
            keep_checkpoints_without_metrics=False),
    ])
    self.directory = os.path.join(os.path.abspath(workdir),
                                  store.TRAIN_CHECKPOINTS)
    self.manager = ocp.CheckpointManager(
        self.directory,
        options=store.checkpoint_options(
            preservation_policy=policy,
            keep_checkpoints_without_metrics=True,
            cleanup_tmp_directories=True),
        item_names=store.CHECKPOINT_ITEMS)

  def latest_step(self):
    return self.manager.latest_step()

  def best_step(self):
    """The kept step with the highest rank, or None before any validation."""
    return store.best_step(self.manager)

  def save(self, state, config, metrics: dict | None = None,
           rank: tuple | None = None) -> None:
    """Saves asynchronously at state.step; `rank` orders it for 'best'."""
    step = int(state.step)
    if metrics is not None:
      metrics = dict(metrics, **{store.RANK: [float(r) for r in rank]})
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
