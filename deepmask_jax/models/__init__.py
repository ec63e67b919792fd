"""Flax Linen layers every family builds on: the ResNet trunk, the FPN, convolutions.

The models themselves live with their families (deepmask_jax/families/);
which model a config builds is the registry's business
(deepmask_jax.families.build_model).
"""

from deepmask_jax.models.resnet import Trunk
