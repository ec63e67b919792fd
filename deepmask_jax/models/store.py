"""Model files: an orbax checkpoint of the variables plus the config as JSON.

Layout of a model directory (written by the Torch converter, readable by the
proposal CLI and as `config.trunk_init` / `config.deepmask_checkpoint`):

    DIR/variables/   orbax StandardSave of {'params': ..., 'constants': ...}
    DIR/config.json  the ml_collections config that builds the model

A training workdir is accepted too: its latest checkpoint under
`WORKDIR/checkpoints` is read (see deepmask_jax/train/checkpointing.py), with
the config saved beside it. Nothing here unpickles: orbax stores arrays in
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
    from deepmask_jax.train import checkpointing  # Imports no TensorFlow.
    return checkpointing.load_latest_variables(path)
  if not os.path.isfile(os.path.join(path, CONFIG)):
    raise FileNotFoundError(
        f'{path} is neither a model directory (with {CONFIG} and '
        f'{VARIABLES}/) nor a training workdir (with {TRAIN_CHECKPOINTS}/)')
  with open(os.path.join(path, CONFIG)) as f:
    config = config_from_json(f.read())
  with ocp.StandardCheckpointer() as checkpointer:
    variables = checkpointer.restore(os.path.join(path, VARIABLES))
  return jax.tree.map(np.asarray, variables), config


def _plain_dict(tree):
  """Nested plain dicts (Flax may hand FrozenDicts), so orbax stores a dict."""
  if hasattr(tree, 'items'):
    return {str(k): _plain_dict(v) for k, v in tree.items()}
  return tree
