"""Flax Linen models: the ResNet trunk, DeepMask and SharpMask."""

from deepmask_jax.models.deepmask import DeepMask, deepmask_from_config
from deepmask_jax.models.sharpmask import Refinement, SharpMask
from deepmask_jax.models.resnet import Trunk


def model_from_config(config):
  """The model named by `config.model` ('deepmask' or 'sharpmask')."""
  if config.model == 'deepmask':
    return deepmask_from_config(config)
  if config.model == 'sharpmask':
    deepmask = deepmask_from_config(config)
    return SharpMask(deepmask, km=config.refine.km)
  raise ValueError(f"config.model must be 'deepmask' or 'sharpmask', "
                   f'got {config.model!r}')
