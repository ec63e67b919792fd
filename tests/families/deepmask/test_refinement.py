"""SharpMask: reference parameter counts and the refinement's resolution path."""

import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.config_schema import get_config
from deepmask_jax.families import build_model
from tests.conftest import tiny_config


def count(tree) -> int:
  return sum(int(np.prod(x.shape)) for x in jax.tree.leaves(tree))


def sharpmask_config(base):
  base.model = 'sharpmask'
  base.patch.label_size = 160
  return base


def test_refinement_adds_the_reference_parameter_count():
  model = build_model(sharpmask_config(get_config()))
  params = jax.eval_shape(lambda: model.init(
      jax.random.PRNGKey(0), jnp.zeros((1, 192, 192, 3))))['params']
  refinement = params['refinement']
  neths = sum(count(refinement[f'horizontals_{i}']) for i in range(4))
  netvs = count(refinement['encoding']) + sum(
      count(refinement[f'verticals_{i}']) for i in range(4))
  assert neths == 1_090_466
  assert netvs == 1_660_050
  assert neths + netvs == 2_750_516  # The figure SharpMask.lua prints.
  assert count(refinement['final']) == 19  # Added after that print.
  assert count(params['deepmask']) == 17_348_417


def test_patch_form_gives_160_px_logits_and_scores():
  model = build_model(sharpmask_config(tiny_config()))
  images = jax.random.normal(jax.random.PRNGKey(0), (2, 192, 192, 3))
  variables = model.init(jax.random.PRNGKey(1), images)
  out = model.apply(variables, images)
  assert out['mask'].shape == (2, 160, 160)
  assert out['score'].shape == (2,)


def test_dense_skip_crops_match_patch_form_inside_the_window():
  """Cutting the dense horizontal maps at window (1, 1) of a 192-px image
  gives the patch form's skip features. They agree exactly away from the
  border: the reference's inference also runs the horizontal nets on whole
  maps, so padding differs only within the 3 convs' reach of the crop edge."""
  model = build_model(sharpmask_config(tiny_config()))
  images = jax.random.normal(jax.random.PRNGKey(2), (2, 192, 192, 3))
  variables = model.init(jax.random.PRNGKey(1), images)

  def patch_horizontals(module, images):
    features, _ = module.deepmask.encode(images, crop=True)
    return module.refinement.horizontal(features, crop=True)

  patch = model.apply(variables, images, method=patch_horizontals)
  dense = model.apply(variables, images, method='dense')['horizontals']
  for j, (window, whole) in enumerate(zip(patch, dense)):
    side = 10 * 2 ** j
    cut = whole[:, 2 ** j:2 ** j + side, 2 ** j:2 ** j + side]
    assert cut.shape == window.shape
    np.testing.assert_allclose(cut[:, 3:-3, 3:-3], window[:, 3:-3, 3:-3],
                               rtol=1e-5, atol=1e-5)
