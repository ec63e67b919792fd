"""Model files: an orbax checkpoint of the variables plus the config as JSON.

Layout of a model directory (written by the Torch converter, readable by the
proposal CLI and as `config.trunk_init` / `config.deepmask_checkpoint`):

    DIR/variables/   orbax StandardSave of {'params': ..., 'constants': ...}
    DIR/config.json  the ml_collections config that builds the model

A training workdir is accepted too: its best-ranked (else latest) checkpoint
under `WORKDIR/checkpoints/<step>/{state,config}` is read, with the config
saved beside it (deepmask_jax/train/checkpointing.py writes them; this module
only reads, so the model layer needs nothing from the training layer). A step
is read only if its files match the checksums saved with it
(deepmask_jax/models/checksums.py); damaged steps are named and passed over.
A step without checksums is whole as far as orbax knows (orbax renames it
into place once written) but unchecked: it is an unfinished save (the
process stopped before its checksums were written) or older than checksums.
While another step has checksums it is passed over as damaged (a checked
step is used instead). When no step has any, the steps are read unverified,
rather than leaving nothing to resume from, with one line saying why: a lone
step is an unfinished first save (or, which its files cannot tell, an older
version's step); several come from an older version, as this one seals each
step before saving the next.
Nothing here unpickles: orbax stores arrays in tensorstore/OCDBT and the
config is JSON, so an untrusted model file cannot execute code.
"""

import json
import os
import shutil
import sys

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

from deepmask_jax.config_renames import apply_renames
from deepmask_jax.errors import CheckpointError
from deepmask_jax.models import checksums

VARIABLES = 'variables'
CONFIG = 'config.json'
TRAIN_CHECKPOINTS = 'checkpoints'
# Metric key under which the trainer stores a checkpoint's ranking tuple (its
# family's `rank(figures)`); the highest ranked step is the "best" one.
RANK = 'rank'
CHECKPOINT_ITEMS = ('state', 'config')


def config_from_json(text: str) -> ml_collections.ConfigDict:
  """A ConfigDict from JSON; lists become tuples, as the configs write them,
  and fields saved under an old name get their new one (config_renames.py)."""
  def tuples(value):
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    return value
  return apply_renames(ml_collections.ConfigDict(tuples(json.loads(text))))


def save_model(directory: str, variables: dict, config) -> None:
  """Writes `variables` ({'params', 'constants'}) and `config` to `directory`.

  The directory must not exist yet; it is written under a temporary name and
  renamed at the end, so a failure leaves nothing half-written.
  """
  directory = os.path.abspath(directory)
  if os.path.exists(directory):
    raise FileExistsError(f'{directory} already exists; choose a new --out')
  staging = directory + '.partial'
  if os.path.exists(staging):
    raise FileExistsError(f'{staging} exists (a failed earlier write?); '
                          'remove it first')
  os.makedirs(staging)
  try:
    variables = jax.tree.map(np.asarray, _plain_dict(variables))
    with ocp.StandardCheckpointer() as checkpointer:
      checkpointer.save(os.path.join(staging, VARIABLES), variables)
      checkpointer.wait_until_finished()
    with open(os.path.join(staging, CONFIG), 'w') as f:
      f.write(config.to_json(indent=2))
    os.rename(staging, directory)
  except BaseException:
    shutil.rmtree(staging, ignore_errors=True)
    raise


def load_model(path: str, step: int | None = None):
  """Reads a model directory or a training workdir.

  Returns (variables, config): variables is {'params', 'constants'} as nested
  dicts of numpy arrays; config the ConfigDict that builds the model. `step`
  picks a workdir's checkpoint (see `read_model`).
  """
  variables, config, _ = read_model(path, step)
  return variables, config


def read_model(path: str, step: int | None = None):
  """(variables, config, step) of a model directory or a training workdir.

  A workdir gives `step` (default: the best-ranked intact validated
  checkpoint, else the latest intact one; see `choose_training_step`); a
  model directory has no steps, so `step` is not used and None is returned.
  """
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, TRAIN_CHECKPOINTS)):
    step = choose_training_step(path, step)
    return (*read_training_step(path, step), step)
  if not os.path.isfile(os.path.join(path, CONFIG)):
    raise FileNotFoundError(
        f'{path} is neither a model directory (with {CONFIG} and '
        f'{VARIABLES}/) nor a training workdir (with {TRAIN_CHECKPOINTS}/)')
  with open(os.path.join(path, CONFIG)) as f:
    config = config_from_json(f.read())
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(path, VARIABLES))
  return jax.tree.map(np.asarray, variables), config, None


def checkpoint_options(**kwargs) -> ocp.CheckpointManagerOptions:
  """Manager options that store (and read back) each step's metrics."""
  # best_fn makes orbax keep the metrics passed to save(); which steps stay
  # is decided by the trainer's preservation policy alone.
  return ocp.CheckpointManagerOptions(best_fn=lambda m: m[RANK][0], **kwargs)


def saved_steps(directory: str) -> list:
  """Steps under a checkpoints directory, oldest first (orbax names a step's
  directory by its number; half-written ones carry a suffix)."""
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def _rank(directory: str, step: int):
  """A step's ranking tuple, or None if unvalidated or unreadable (damaged).

  Read from the JSON orbax keeps at STEP/metrics/metrics, not through a
  CheckpointManager, whose constructor fails on any damaged step.
  """
  try:
    with open(os.path.join(directory, str(step), 'metrics', 'metrics')) as f:
      return tuple(float(r) for r in json.load(f)[RANK])
  except Exception:  # pylint: disable=broad-except
    return None


def best_step(directory: str):
  """The step with the highest rank, or None before any validation."""
  ranked = [(rank, s) for s in saved_steps(directory)
            if (rank := _rank(directory, s)) is not None]
  return max(ranked)[1] if ranked else None


def steps_by_preference(directory: str) -> list:
  """All steps, best first: validated ones by rank, then the rest newest first."""
  ranks = {s: _rank(directory, s) for s in saved_steps(directory)}
  ranked = sorted(((r, s) for s, r in ranks.items() if r is not None),
                  reverse=True)
  return ([s for _, s in ranked] +
          sorted((s for s, r in ranks.items() if r is None), reverse=True))


def _read_unverified(directory: str) -> list:
  """The steps, oldest first, if none has checksums (then all are read
  unverified); else [] (each step is checked, see the module doc)."""
  steps = saved_steps(directory)
  if any(os.path.exists(os.path.join(directory, str(s), checksums.MANIFEST))
         for s in steps):
    return []
  return steps


def damage_of(directory: str, step: int) -> str | None:
  """Why `step` cannot be trusted (one line), or None.

  Steps are read unverified when none has checksums (warn_if_unverified says
  so once) rather than refused.
  """
  if _read_unverified(directory):
    return None
  return checksums.find_damage(os.path.join(directory, str(step)))


def warn_if_unverified(directory: str) -> None:
  """One line on stderr if the steps are read unverified, and why."""
  steps = _read_unverified(directory)
  if len(steps) == 1:
    print(f'checkpoint step {steps[0]} in {directory} has no '
          f'{checksums.MANIFEST}: {checksums.UNFINISHED} (or a step written '
          'by an older version); read unverified, as it is the only step',
          file=sys.stderr, flush=True)
  elif steps:
    print(f'checkpoints in {directory} have no checksums (written by an '
          'older version): read unverified', file=sys.stderr, flush=True)


def first_intact_step(directory: str, steps) -> tuple:
  """(first step of `steps` whose files match its checksums or None,
  [(step, why) of the damaged steps tried before it])."""
  warn_if_unverified(directory)
  damaged = []
  for step in steps:
    why = damage_of(directory, step)
    if why is None:
      return step, damaged
    damaged.append((step, why))
  return None, damaged


def report_damaged(directory: str, damaged, action: str) -> None:
  """One line on stderr per damaged step: which, why, and what was done."""
  for step, why in damaged:
    print(f'checkpoint step {step} in {directory} is damaged: {why}; {action}',
          file=sys.stderr, flush=True)


def no_intact_step_error(directory: str, damaged) -> CheckpointError:
  listed = '; '.join(f'step {step}: {why}' for step, why in damaged)
  return CheckpointError(f'no usable checkpoint in {directory} ({listed}); '
                         'nothing was loaded')


def choose_training_step(workdir: str, step: int | None = None) -> int:
  """The step `load_training_checkpoint` reads: `step`, else the best-ranked
  intact validated checkpoint, else the latest intact one.

  Damaged steps passed over are named on stderr. A damaged `step` asked for
  by number, or no intact step, raises CheckpointError.
  """
  directory = os.path.join(os.path.abspath(workdir), TRAIN_CHECKPOINTS)
  if step is None:
    candidates = steps_by_preference(directory)
  elif step in saved_steps(directory):
    candidates = [step]
  else:
    raise CheckpointError(f'no checkpoint step {step} in {directory} (steps '
                          f'there: {saved_steps(directory)})')
  if not candidates:
    raise CheckpointError(f'no checkpoint in {directory}')
  chosen, damaged = first_intact_step(directory, candidates)
  if chosen is None:
    raise no_intact_step_error(directory, damaged)
  report_damaged(directory, damaged, f'reading step {chosen} instead')
  return chosen


def read_training_step(workdir: str, step: int):
  """({'params', 'constants'} of numpy arrays, ConfigDict) of a checked step
  (`choose_training_step`); no optimiser state."""
  directory = os.path.join(os.path.abspath(workdir), TRAIN_CHECKPOINTS)
  # A checkpoint written by several processes records their devices; the
  # fallback reads it on this process's first device instead.
  local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
  with ocp.Checkpointer(ocp.CompositeCheckpointHandler()) as checkpointer:
    restored = checkpointer.restore(
        os.path.join(directory, str(step)), args=ocp.args.Composite(
            state=ocp.args.StandardRestore(fallback_sharding=local),
            config=ocp.args.JsonRestore()))
  state, config = restored['state'], restored['config']
  config = config_from_json(json.dumps(config))
  variables = {'params': state['params'],
               'constants': state.get('constants') or {}}
  return jax.tree.map(np.asarray, variables), config


def load_training_checkpoint(workdir: str, step: int | None = None):
  """Model variables and config from a training workdir (no optimiser state).

  Returns ({'params', 'constants'} of numpy arrays, ConfigDict). `step`
  defaults to the best-ranked intact validated checkpoint, else the latest
  intact one; damaged steps are named on stderr and passed over. A damaged
  `step` asked for by number, or no intact step, raises CheckpointError.
  """
  return read_training_step(workdir, choose_training_step(workdir, step))


def _plain_dict(tree):
  """Nested plain dicts (Flax may hand FrozenDicts), so orbax stores a dict."""
  if hasattr(tree, 'items'):
    return {str(k): _plain_dict(v) for k, v in tree.items()}
  return tree
