"""Model families behind one interface (base.Family), found by `config.model`.

    family = bind(config)  # config.model's family, config resolved once.
    model = family.build_model()

Each family is a package (families/deepmask/, families/embedmask/) that
imports the shared layers and no other family; the shared layers import no
family. A family is loaded on first use, so importing one of its light
modules (say its config defaults) does not load every family. Adding a
family is a package and one REGISTRY line: docs/adding_a_family.md.
"""

import importlib

from deepmask_jax.errors import InputError
from deepmask_jax.families.base import Family
from deepmask_jax.families.bound import BoundFamily
from deepmask_jax.models.store import load_model

# config.model -> (module, class) of its family: the one line a new family adds.
REGISTRY = {
    'deepmask': ('deepmask_jax.families.deepmask.family', 'DeepMaskFamily'),
    'sharpmask': ('deepmask_jax.families.deepmask.family', 'SharpMaskFamily'),
    'embedmask': ('deepmask_jax.families.embedmask.family', 'EmbedMaskFamily'),
}
_LOADED: dict = {}


def get_family(name: str) -> Family:
  """The family registered under `name` (config.model)."""
  if name not in REGISTRY:
    raise InputError(f'config.model must be one of {sorted(REGISTRY)}, '
                     f'got {name!r}')
  if name not in _LOADED:
    module, cls = REGISTRY[name]
    _LOADED[name] = getattr(importlib.import_module(module), cls)()
  return _LOADED[name]


def bind(config) -> BoundFamily:
  """config.model's family bound to `config` resolved (Family.resolve_config,
  run here once): what a training run uses."""
  family = get_family(config.model)
  return BoundFamily(family, family.resolve_config(config))


def bind_resolved(config) -> BoundFamily:
  """config.model's family bound to a config resolved already: one saved with
  a trained model (checkpoint, model directory), or written out in full."""
  return BoundFamily(get_family(config.model), config)


def build_model(config):
  """The model of `config.model` described by `config` (resolved already)."""
  return bind_resolved(config).build_model()


def load(path: str):
  """(bound family, model, variables) of a model directory or training
  workdir; the family is bound to the model's saved config."""
  variables, config = load_model(path)
  family = bind_resolved(config)
  return family, family.build_model(), variables


def predictor_from_path(path: str, **overrides):
  """The family's inference object for a model directory or training workdir."""
  family, model, variables = load(path)
  return family.predictor(model, variables, **overrides)
