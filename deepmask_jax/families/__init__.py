"""Model families behind one interface (base.Family), found by `config.model`.

    family = get_family(config.model)
    model = family.build_model(config)
"""

from deepmask_jax.errors import InputError
from deepmask_jax.families.base import Family
from deepmask_jax.families.deepmask import DeepMaskFamily, SharpMaskFamily
from deepmask_jax.families.embedmask import EmbedMaskFamily
from deepmask_jax.models.store import load_model

FAMILIES = {family.name: family
            for family in (DeepMaskFamily(), SharpMaskFamily(),
                            EmbedMaskFamily())}


def get_family(name: str) -> Family:
  """The family registered under `name` (config.model)."""
  if name not in FAMILIES:
    raise InputError(f'config.model must be one of {sorted(FAMILIES)}, '
                     f'got {name!r}')
  return FAMILIES[name]


def build_model(config):
  """The model of `config.model` described by `config`."""
  return get_family(config.model).build_model(config)


def load(path: str):
  """(family, model, variables, config) of a model directory or training workdir."""
  variables, config = load_model(path)
  family = get_family(config.model)
  return family, family.build_model(config), variables, config


def predictor_from_path(path: str, **overrides):
  """The family's inference object for a model directory or training workdir."""
  family, model, variables, config = load(path)
  return family.predictor(model, variables, config, **overrides)
