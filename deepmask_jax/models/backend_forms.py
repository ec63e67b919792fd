"""Which backend's speed forms a traced layer takes.

Some layers (models/convolution.py's convs, layers.max_pool_3x3_stride2)
have forms measured faster on XLA's CPU backend; they apply on CPU only, and
GPU/TPU trace XLA's own operation. `forms_of` forces one backend's forms,
e.g. the CPU forms on a GPU, to time both there.
"""

import contextlib
from typing import Optional

import jax

_forced_backend: Optional[str] = None


def backend() -> str:
  """The backend layers are traced for: jax.default_backend(), or the one a
  surrounding `forms_of` names."""
  return _forced_backend or jax.default_backend()


@contextlib.contextmanager
def forms_of(name: str):
  """Layers traced inside take the forms of backend `name` ('cpu', 'gpu',
  'tpu')."""
  global _forced_backend
  previous, _forced_backend = _forced_backend, name
  try:
    yield
  finally:
    _forced_backend = previous
