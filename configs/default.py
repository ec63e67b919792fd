"""Base config: the reference values of every field (deepmask_jax/config_schema.py)."""

from deepmask_jax.config_schema import get_config  # pylint: disable=unused-import
