"""bf16 compute (`config.dtype='bfloat16'`): bf16 convs and matmuls, float32
parameters and logits, outputs close to float32."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from deepmask_jax.families import build_model
from tests.conftest import tiny_config

HEAVY_PRIMITIVES = ('conv_general_dilated', 'dot_general')
SIDE = 96  # Patch side of a 64-px object window.


def primitive_input_dtypes(closed_jaxpr, names=HEAVY_PRIMITIVES) -> dict:
  """{primitive name: set of its operand dtypes} over the jaxpr and every
  jaxpr nested in its equations (jit, custom_jvp, ...)."""
  found = {}

  def walk(jaxpr):
    for eqn in jaxpr.eqns:
      if eqn.primitive.name in names:
        found.setdefault(eqn.primitive.name, set()).update(
            str(v.aval.dtype) for v in eqn.invars)
      for value in eqn.params.values():
        for sub in value if isinstance(value, (tuple, list)) else [value]:
          if hasattr(sub, 'jaxpr') and hasattr(sub.jaxpr, 'eqns'):
            walk(sub.jaxpr)  # ClosedJaxpr.
          elif hasattr(sub, 'eqns'):
            walk(sub)

  walk(closed_jaxpr.jaxpr)
  return found


def models(kind: str):
  """(float32 model, bf16 model, float32-initialised variables) of a tiny `kind`."""
  overrides = {'model': kind, 'patch.object_window': 64,
               'patch.label_size': 56}
  f32 = build_model(tiny_config(**overrides))
  bf16 = build_model(tiny_config(dtype='bfloat16', **overrides))
  variables = jax.jit(f32.init)(jax.random.key(0, impl='rbg'),
                                jnp.zeros((1, SIDE, SIDE, 3)))
  return f32, bf16, variables


@pytest.fixture(scope='module', params=['deepmask', 'sharpmask'])
def pair(request):
  return models(request.param)


def images(batch=2, height=SIDE, width=SIDE, seed=0):
  return jax.random.normal(jax.random.key(seed), (batch, height, width, 3))


def test_bf16_model_computes_convs_and_matmuls_in_bf16(pair):
  _, bf16, variables = pair
  jaxpr = jax.make_jaxpr(lambda v, x: bf16.apply(v, x))(variables, images())
  dtypes = primitive_input_dtypes(jaxpr)
  assert set(dtypes) == set(HEAVY_PRIMITIVES)
  assert dtypes['conv_general_dilated'] == {'bfloat16'}
  # The one float32 matmul: the 56 -> label-size upsampling of the mask
  # logits, which already left the heads as float32 (and none here: 56).
  assert dtypes['dot_general'] == {'bfloat16'}


def test_float32_model_has_no_bf16_anywhere(pair):
  f32, _, variables = pair
  jaxpr = jax.make_jaxpr(lambda v, x: f32.apply(v, x))(variables, images())
  dtypes = primitive_input_dtypes(jaxpr)
  assert set().union(*dtypes.values()) == {'float32'}


def test_bf16_params_init_float32_and_logits_float32(pair):
  _, bf16, _ = pair
  variables = jax.eval_shape(bf16.init, jax.random.key(1, impl='rbg'),
                             jnp.zeros((1, SIDE, SIDE, 3)))
  assert {str(x.dtype) for x in jax.tree.leaves(variables)} == {'float32'}
  out = jax.eval_shape(bf16.apply, variables, images())
  assert out['mask'].dtype == jnp.float32 and out['score'].dtype == jnp.float32


def close_in_bf16(bf16_out, f32_out, relative=0.05):
  """bf16 keeps 8 mantissa bits (0.4 % per rounding); over a tiny network
  the logits stay within a few percent of their float32 range."""
  scale = float(np.max(np.abs(f32_out)))
  diff = float(np.max(np.abs(np.asarray(bf16_out) - np.asarray(f32_out))))
  assert diff <= relative * scale, (diff, scale)
  assert diff > 0  # Really computed in bf16.


def test_bf16_patch_outputs_close_to_float32(pair):
  f32, bf16, variables = pair
  x = images()
  expected = jax.jit(f32.apply)(variables, x)
  got = jax.jit(bf16.apply)(variables, x)
  for key in ('mask', 'score'):
    close_in_bf16(got[key], expected[key])
  # Thresholded masks (what IoU and pasting see) barely change.
  assert np.mean((got['mask'] > 0) != (expected['mask'] > 0)) < 0.02


def test_bf16_dense_outputs_float32_and_close(pair):
  f32, bf16, variables = pair
  x = images(1, 112, 128, seed=1)
  dense = lambda model: jax.jit(lambda v, x: model.apply(v, x,
                                                        method=model.dense))
  expected, got = dense(f32)(variables, x), dense(bf16)(variables, x)
  assert got['score'].dtype == got['mask'].dtype == jnp.float32
  for key in ('score', 'mask'):
    close_in_bf16(got[key], expected[key])
