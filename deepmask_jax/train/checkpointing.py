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

Disk faults: orbax writes a step asynchronously into a temporary directory
and renames it when complete; a sealing thread then waits for that and writes
the step's checksums (models/checksums.py), so a step is trusted only once
fully on disk. A failed save (disk full, read-only directory) stops training
with a CheckpointError at the next step, and removes nothing older. On
resume, damaged steps (truncated, missing or changed files; no checksums
beside sealed steps: an unfinished save) are named and moved to
WORKDIR/damaged_checkpoints/ before orbax opens the directory, and the
newest intact step is restored; with none intact the run stops, loading
nothing. A lone step without checksums is read unverified, with a line
saying why (models/store.py). With several processes, process 0 does the
checking and writes the checksums.
"""

import errno
import json
import os
import re
import shutil
import sys
import threading
import time

from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
import orbax.checkpoint as ocp
from orbax.checkpoint import checkpoint_managers

from deepmask_jax.errors import CheckpointError
from deepmask_jax.models import checksums, store
from deepmask_jax.train.resume_check import check_arrays

DAMAGED = 'damaged_checkpoints'
_TMP_SUFFIX = '.orbax-checkpoint-tmp'  # orbax's name for a step being written


class Checkpoints:
  """Saves and restores TrainStates under WORKDIR/checkpoints."""

  def __init__(self, workdir: str, keep: int = 3):
    policy = checkpoint_managers.AnyPreservationPolicy(policies=[
        checkpoint_managers.LatestN(n=keep),
        checkpoint_managers.BestN(
            get_metric_fn=lambda m: tuple(m[store.RANK]), n=1,
            keep_checkpoints_without_metrics=False),
    ])
    self.workdir = os.path.abspath(workdir)
    self.directory = os.path.join(self.workdir, store.TRAIN_CHECKPOINTS)
    # With several processes (one shared workdir), process 0 checks, moves and
    # seals steps; the others wait for its check before orbax opens the folder.
    self._primary = jax.process_index() == 0
    if self._primary:
      _remove_unfinished_saves(self.directory)
      self._set_aside_damaged()
    if jax.process_count() > 1:
      multihost_utils.sync_global_devices('checkpoints_checked')
    self._sealing = None  # The thread finishing the last save.
    self._failure = None  # (step, exception) of a save that failed.
    self._failure_reported = False
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
    return store.best_step(self.directory)

  def save(self, state, config, metrics: dict | None = None,
           rank: tuple | None = None) -> None:
    """Starts saving state.step in the background; `rank` orders it for 'best'.

    Raises CheckpointError if the previous save failed, or if this one cannot
    start (the arrays are copied off the device before this returns).
    """
    self._finish_sealing()
    step = int(state.step)
    if metrics is not None:
      metrics = dict(metrics, **{store.RANK: [float(r) for r in rank]})
    try:
      self.manager.save(
          step, metrics=metrics,
          args=ocp.args.Composite(state=ocp.args.StandardSave(state),
                                  config=ocp.args.JsonSave(config.to_dict())),
          force=True)
    except Exception as err:  # pylint: disable=broad-except
      self._failure = (step, err)
      self._finish_sealing()
    self._sealing = threading.Thread(target=self._seal, args=(step,),
                                     name=f'seal_checkpoint_{step}')
    self._sealing.start()

  def _seal(self, step: int) -> None:
    """Waits for orbax to finish `step`, then writes its checksums."""
    try:
      self.manager.wait_until_finished()
      if self._primary:  # Orbax has finalised every process's files.
        checksums.write_manifest(os.path.join(self.directory, str(step)))
    except Exception as err:  # pylint: disable=broad-except
      self._failure = (step, err)

  def _finish_sealing(self) -> None:
    """Waits for the last save; raises CheckpointError (once) if it failed."""
    if self._sealing is not None:
      self._sealing.join()
      self._sealing = None
    if self._failure and not self._failure_reported:
      self._failure_reported = True
      step, err = self._failure
      kept = sorted(int(n) for n in os.listdir(self.directory)
                    if n.isdigit() and int(n) != step)
      raise CheckpointError(
          f'could not save checkpoint step {step} in {self.directory}: '
          f'{_one_line(err)}; training stopped. Earlier checkpoints are '
          f'untouched (steps on disk: {kept}).') from err

  def _set_aside_damaged(self) -> None:
    """Checks every saved step; moves damaged ones to WORKDIR/damaged_checkpoints.

    Done before orbax opens the directory: its manager reads every step's
    metadata when created and fails on a damaged one. Moving them also frees
    their step numbers for the resumed run's saves. With no intact step left
    nothing is moved and CheckpointError is raised.
    """
    steps = sorted(store.saved_steps(self.directory), reverse=True)
    store.warn_if_unverified(self.directory)
    damaged = [(s, why) for s in steps
               if (why := store.damage_of(self.directory, s))]
    if not damaged:
      return
    if len(damaged) == len(steps):
      raise store.no_intact_step_error(self.directory, damaged)
    newest = next(s for s in steps if s not in dict(damaged))
    store.report_damaged(self.directory, damaged,
                         f'moved to {os.path.join(self.workdir, DAMAGED)}; '
                         f'the newest intact step is {newest}')
    for step, _ in damaged:
      self._move_aside(step)

  def restore(self, abstract_state, step: int | None = None):
    """Restores a TrainState shaped (and sharded) like `abstract_state`.

    `step` defaults to the latest; every step left in the directory passed
    its checksums when this object was created. Arrays shaped otherwise than
    `abstract_state`'s (a resumed run whose config changed a shape) stop it
    with one CheckpointError line naming them, before orbax reads any.
    """
    step = self.latest_step() if step is None else step
    check_arrays(self._saved_shapes(step), array_shapes(abstract_state),
                 self.workdir, step)
    restored = self.manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(abstract_state)))
    return restored['state']

  def saved_config(self, step: int | None = None):
    """The ConfigDict checkpoint `step` (default: the latest) was saved with."""
    step = self.latest_step() if step is None else step
    restored = self.manager.restore(step, args=ocp.args.Composite(
        config=ocp.args.JsonRestore()))
    return store.config_from_json(json.dumps(restored['config']))

  def _saved_shapes(self, step: int) -> dict:
    """{'a/b/c': shape} of the arrays of checkpoint `step`, from orbax's
    metadata (no array is read)."""
    handler = ocp.StandardCheckpointHandler()
    try:
      return array_shapes(handler.metadata(
          epath.Path(self.directory) / str(step) / 'state'))
    finally:
      handler.close()

  def _move_aside(self, step: int) -> None:
    target = os.path.join(self.workdir, DAMAGED, str(step))
    suffix = 1
    while os.path.exists(target):
      target = os.path.join(self.workdir, DAMAGED, f'{step}-{suffix}')
      suffix += 1
    os.makedirs(os.path.dirname(target), exist_ok=True)
    shutil.move(os.path.join(self.directory, str(step)), target)

  def wait(self) -> None:
    """Waits for the last save; raises CheckpointError if it failed."""
    self._finish_sealing()

  def raise_if_failed(self) -> None:
    """Raises CheckpointError at once if a background save has failed."""
    if self._failure and not self._failure_reported:
      self._finish_sealing()

  def close(self) -> None:
    """Waits for the last save (CheckpointError if it failed) and closes.

    A run that saved nothing leaves no empty checkpoints folder behind.
    """
    try:
      self._finish_sealing()
    finally:
      try:
        self.manager.close()
      except Exception:  # pylint: disable=broad-except
        # Orbax raises a failed save's error object again: that one is
        # already reported (raising it here would chain it to itself).
        if not self._failure:
          raise
      finally:
        _remove_if_empty(self.directory)


def array_shapes(tree) -> dict:
  """{'a/b/c': shape tuple} of a pytree's arrays (or orbax's metadata of
  them): dict keys, attribute names and sequence indices joined by '/', so
  a dataclass or named tuple and the dict orbax saves it as name alike."""
  def name(key):
    for attribute in ('key', 'name', 'idx'):
      if hasattr(key, attribute):
        return str(getattr(key, attribute))
    return str(key)
  return {'/'.join(name(k) for k in path): tuple(np.shape(leaf))
          for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]}


def _one_line(err: Exception) -> str:
  """The error in one short line, led by its OS cause (tensorstore's are long)."""
  text = ' '.join(str(err).split()) or type(err).__name__
  code = err.errno if isinstance(err, OSError) else None
  found = re.search(r"os_error_code='(\d+)'", text)
  if not code and found:
    code = int(found.group(1))
  if len(text) > 200:
    text = text[:197] + '...'
  cause = os.strerror(code) if code else ''
  return f'{cause} ({text})' if cause and cause not in text else text


def _remove_if_empty(directory: str) -> None:
  try:
    os.rmdir(directory)
  except OSError:
    pass  # Not empty (or already gone): kept as it is.


def _remove_unfinished_saves(directory: str) -> None:
  """Names and removes the steps a crash left half-written (orbax's temporary
  directories; never listed as steps). Done here rather than by orbax's own
  cleanup, which runs in the background and says nothing."""
  if not os.path.isdir(directory):
    return
  for name in sorted(os.listdir(directory)):
    if _TMP_SUFFIX in name:
      print(f'checkpoint {name} in {directory} was left half-written by an '
            'interrupted save; removing it (it is never restored)',
            file=sys.stderr, flush=True)
      _remove_tree(os.path.join(directory, name))


def _remove_tree(path: str, attempts: int = 50) -> None:
  """rmtree that waits (up to about 5 s) for writers of a failed save that
  are still finishing in tensorstore's threads ('directory not empty')."""
  for attempt in range(attempts):
    try:
      shutil.rmtree(path, onerror=_unless_gone)
      return
    except OSError as err:
      if err.errno != errno.ENOTEMPTY or attempt == attempts - 1:
        raise
      time.sleep(0.1)


def _unless_gone(function, path, exc_info) -> None:
  """rmtree's error hook: a file that vanished meanwhile (a lock tensorstore
  releases late) is fine, anything else is raised."""
  del function, path
  if not issubclass(exc_info[0], FileNotFoundError):
    raise exc_info[1]
