"""XLA compiler options for the programs that run the networks.

On CPU, jaxlib 0.10's XLA hands convolutions to YNNPACK by default
(`xla_cpu_experimental_ynn_fusion_type`). On this project's shapes that is
2-6x slower than XLA's own convolutions (measured on an x86-64 AVX2 CPU:
experiments/README.md, "CPU speed"), while YNNPACK's matmuls are the faster
ones. `network_jit` therefore compiles with YNNPACK for matmuls only, on CPU,
where the installed XLA knows the option (tried once on a tiny program: an
XLA without it compiles with its defaults) and XLA_FLAGS does not set it (a
user's own flags win). Other backends compile as usual. `jax.pmap` takes no
compiler options, so `config.parallel='pmap'` keeps XLA's defaults.
"""

import functools
import logging
import os
from typing import Callable, Optional

import jax
import jax.numpy as jnp

CPU_OPTIONS = {
    'xla_cpu_experimental_ynn_fusion_type': 'LIBRARY_FUSION_TYPE_INDIVIDUAL_DOT',
}


@functools.cache
def network_options() -> Optional[dict]:
  """The compiler options for network programs on the default backend."""
  if jax.default_backend() != 'cpu':
    return None
  if any(name in os.environ.get('XLA_FLAGS', '') for name in CPU_OPTIONS):
    return None
  try:
    jax.jit(jnp.negative, compiler_options=CPU_OPTIONS)(jnp.zeros(()))
  except Exception as error:  # pylint: disable=broad-except
    logging.info('XLA does not take %s (%s); using its defaults', CPU_OPTIONS,
                 error)
    return None
  return dict(CPU_OPTIONS)


def network_jit(fn: Callable, **jit_kwargs) -> Callable:
  """`jax.jit(fn, **jit_kwargs)` with `network_options()`."""
  return jax.jit(fn, compiler_options=network_options(), **jit_kwargs)
