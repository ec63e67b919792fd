"""Model files: an orbax checkpoint of the variables plus the config as JSON.

Layout of a model directory (written by the Torch converter, readable by the
proposal CLI and as `config.trunk_init` / `config.deepmask_checkpoint`):

    DIR/variables/   orbax StandardSave of {'params': ..., 'constants': ...}
    DIR/config.json  the ml_collections config that builds the model

A training workdir is accepted too: its best-ranked (else latest) checkpoint
under `WORKDIR/checkpoints/<step>/{state,config}` is read, with the config
saved beside it (deepmask_jax/train/checkpointing.py writes them; this module
only reads, so the model layer needs nothing from the training layer). Nothing here unpickles: orbax stores arrays in
tensorstore/OCDBT and the config is JSON, so an untrusted model file cannot
execute code.
"""

import json
import os
import shutil

import jax
import ml_collections
import numpy as np
import orbax.checkpoint as ocp

VARIABLES = 'variables'
CONFIG = 'config.json'
TRAIN_CHECKPOINTS = 'checkpoints'
# Metric key under which the trainer stores a checkpoint's ranking tuple (its
# family's `rank(figures)`); the highest ranked step is the "best" one.
RANK = 'rank'
CHECKPOINT_ITEMS = ('state', 'config')


def config_from_json(text: str) -> ml_collections.ConfigDict:
  """A ConfigDict from JSON; lists become tuples, as the configs write them."""
  def tuples(value):
    if isinstance(value, list):
      return tuple(tuples(v) for v in value)
    if isinstance(value, dict):
      return {k: tuples(v) for k, v in value.items()}
    return value
  return ml_collections.ConfigDict(tuples(json.loads(text)))


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


def load_model(path: str):
  """Reads a model directory or a training workdir.

  Returns (variables, config): variables is {'params', 'constants'} as nested
  dicts of numpy arrays; config the ConfigDict that builds the model.
  """
  path = os.path.abspath(path)
  if os.path.isdir(os.path.join(path, TRAIN_CHECKPOINTS)):
    return load_training_checkpoint(path)
  if not os.path.isfile(os.path.join(path, CONFIG)):
    raise FileNotFoundError(
        f'{path} is neither a model directory (with {CONFIG} and '
        f'{VARIABLES}/) nor a training workdir (with {TRAIN_CHECKPOINTS}/)')
  with open(os.path.join(path, CONFIG)) as f:
    config = config_from_json(f.read())
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(path, VARIABLES))
  return jax.tree.map(np.asarray, variables), config


def checkpoint_options(**kwargs) -> ocp.CheckpointManagerOptions:
  """Manager options that store (and read back) each step's metrics."""
  # best_fn makes orbax keep the metrics passed to save(); which steps stay
  # is decided by the trainer's preservation policy alone.
  return ocp.CheckpointManagerOptions(best_fn=lambda m: m[RANK][0], **kwargs)


def best_step(manager: ocp.CheckpointManager):
  """The kept step with the highest rank, or None before any validation."""
  ranked = [(tuple(m[RANK]), s) for s in manager.all_steps()
            if (m := manager.metrics(s)) and RANK in m]
  return max(ranked)[1] if ranked else None


def load_training_checkpoint(workdir: str, step: int | None = None):
  """Model variables and config from a training workdir (no optimiser state).

  Returns ({'params', 'constants'} of numpy arrays, ConfigDict). `step`
  defaults to the best-ranked validated checkpoint, else the latest.
  """
  directory = os.path.join(os.path.abspath(workdir), TRAIN_CHECKPOINTS)
  with ocp.CheckpointManager(directory, item_names=CHECKPOINT_ITEMS,
                             options=checkpoint_options(read_only=True)
                             ) as manager:
    if step is None:
      step = best_step(manager) or manager.latest_step()
    if step is None:
      raise FileNotFoundError(f'no checkpoint in {directory}')
    # A checkpoint written by several processes records their devices; the
    # fallback reads it on this process's first device instead.
    local = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    restored = manager.restore(step, args=ocp.args.Composite(
        state=ocp.args.StandardRestore(fallback_sharding=local),
        config=ocp.args.JsonRestore()))
  state, config = restored['state'], restored['config']
  config = config_from_json(json.dumps(config))
  variables = {'params': state['params'], 'constants': state['constants']}
  return jax.tree.map(np.asarray, variables), config


def _plain_dict(tree):
  """Nested plain dicts (Flax may hand FrozenDicts), so orbax stores a dict."""
  if hasattr(tree, 'items'):
    return {str(k): _plain_dict(v) for k, v in tree.items()}
  return tree
