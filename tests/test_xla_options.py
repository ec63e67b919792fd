"""Compiler options of the network programs."""

import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax import xla_options


def test_on_cpu_convolutions_leave_ynnpack():
  assert jax.default_backend() == 'cpu'
  assert xla_options.network_options.__wrapped__() == xla_options.CPU_OPTIONS


def test_xla_flags_naming_the_option_win(monkeypatch):
  monkeypatch.setenv('XLA_FLAGS', '--xla_cpu_experimental_ynn_fusion_type=')
  assert xla_options.network_options.__wrapped__() is None


def test_an_option_this_xla_does_not_know_is_dropped(monkeypatch):
  monkeypatch.setattr(xla_options, 'CPU_OPTIONS',
                      {'xla_cpu_experimental_ynn_fusion_type': 'NO_SUCH_TYPE'})
  assert xla_options.network_options.__wrapped__() is None


def test_network_jit_computes_the_same_convolution():
  x = jax.random.normal(jax.random.PRNGKey(0), (1, 9, 9, 3))
  kernel = jax.random.normal(jax.random.PRNGKey(1), (3, 3, 3, 4))
  conv = lambda x, k: jax.lax.conv_general_dilated(
      x, k, (1, 1), 'SAME', dimension_numbers=('NHWC', 'HWIO', 'NHWC'))
  np.testing.assert_allclose(xla_options.network_jit(conv)(x, kernel),
                             jax.jit(conv)(x, kernel), rtol=1e-5, atol=1e-5)
  assert jnp.isfinite(xla_options.network_jit(conv)(x, kernel)).all()
