"""DeepMask, SharpMask and EmbedMask in JAX/Flax.

Importing the package (models, inference, evaluation, conversion) never
imports TensorFlow; only `deepmask_jax.data` does.
"""

__version__ = '0.1.0'
