"""Flax Linen models: the ResNet trunk, DeepMask, SharpMask (and EmbedMask).

Which model a config builds is its family's business
(deepmask_jax.families.build_model).
"""

from deepmask_jax.models.deepmask import DeepMask, deepmask_from_config
from deepmask_jax.models.resnet import Trunk
from deepmask_jax.models.sharpmask import Refinement, SharpMask
