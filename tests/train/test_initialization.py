"""Initial variables: ImageNet trunk from a model directory, SharpMask from DeepMask."""

import jax
import numpy as np
import pytest

from deepmask_jax.families import bind, build_model, get_family
from deepmask_jax.models.resnet import Trunk
from deepmask_jax.models.store import save_model
from tests.conftest import tiny_config


def initial_variables(config, model):
  return get_family(config.model).init_variables(config, model)


def resolve_config(config):
  return get_family(config.model).resolve_config(config)


def test_trunk_init_copies_the_trunk_and_its_constants(tmp_path):
  config = tiny_config()
  model = build_model(config)
  source = jax.tree.map(lambda x: np.asarray(x) + 0.5,
                        initial_variables(config, model))
  save_model(str(tmp_path / 'resnet'), {c: {'trunk': source[c]['trunk']}
                                        for c in source}, config)
  config.trunk_init = str(tmp_path / 'resnet')
  fresh = initial_variables(config, model)
  for collection in ('params', 'constants'):
    for a, b in zip(jax.tree.leaves(fresh[collection]['trunk']),
                    jax.tree.leaves(source[collection]['trunk'])):
      np.testing.assert_array_equal(a, b)
  # The heads stay freshly initialised.
  assert not np.allclose(fresh['params']['mask_head']['bias'],
                         source['params']['mask_head']['bias'])


def test_trunk_init_of_another_shape_fails_clearly(tmp_path):
  other = tiny_config(**{'trunk.widths': (8, 8, 8)})
  variables = initial_variables(other, build_model(other))
  save_model(str(tmp_path / 'resnet'), {c: {'trunk': variables[c]['trunk']}
                                        for c in variables}, other)
  config = tiny_config(trunk_init=str(tmp_path / 'resnet'))
  with pytest.raises(ValueError, match='does not fit'):
    initial_variables(config, build_model(config))


def test_trunk_init_of_another_norm_says_what_to_set(tmp_path):
  config = tiny_config()
  variables = initial_variables(config, build_model(config))
  save_model(str(tmp_path / 'resnet'), {c: {'trunk': variables[c]['trunk']}
                                        for c in variables}, config)
  other = tiny_config(**{'trunk.norm': 'group',
                         'trunk_init': str(tmp_path / 'resnet')})
  with pytest.raises(ValueError, match=r'set --config.trunk.norm=frozen'):
    initial_variables(other, build_model(other))


def test_deepmask_takes_layers_1_to_3_of_a_four_layer_trunk(tmp_path):
  config = tiny_config()
  four_layers = Trunk(padding='zero', stem_width=config.trunk.stem_width,
                      widths=tuple(config.trunk.widths) + (8,),
                      depths=tuple(config.trunk.depths) + (1,))
  shapes = jax.eval_shape(four_layers.init, jax.random.PRNGKey(1),
                          np.zeros((1, 64, 64, 3), np.float32))
  rng = np.random.default_rng(0)
  source = jax.tree.map(lambda x: rng.normal(size=x.shape).astype(np.float32),
                        shapes)
  save_model(str(tmp_path / 'resnet'), {c: {'trunk': source[c]} for c in source},
             config)
  config.trunk_init = str(tmp_path / 'resnet')
  fresh = initial_variables(config, build_model(config))
  for collection in ('params', 'constants'):
    assert 'layer4_0' not in fresh[collection]['trunk']
    expected = {k: v for k, v in source[collection].items() if k != 'layer4_0'}
    for a, b in zip(jax.tree.leaves(fresh[collection]['trunk']),
                    jax.tree.leaves(expected)):
      np.testing.assert_array_equal(a, b)


def test_sharpmask_takes_architecture_and_weights_from_its_deepmask(tmp_path):
  deepmask_config = tiny_config(**{'trunk.widths': (4, 8, 16)})
  deepmask = initial_variables(deepmask_config,
                               build_model(deepmask_config))
  save_model(str(tmp_path / 'dm'), deepmask, deepmask_config)
  config = tiny_config(model='sharpmask', deepmask_checkpoint=str(tmp_path / 'dm'))
  config = resolve_config(config)
  assert tuple(config.trunk.widths) == (4, 8, 16)
  variables = initial_variables(config, build_model(config))
  for a, b in zip(jax.tree.leaves(variables['params']['deepmask']),
                  jax.tree.leaves(deepmask['params'])):
    np.testing.assert_array_equal(a, b)
  assert 'refinement' in variables['params']


def test_sharpmask_without_deepmask_checkpoint_says_what_to_set():
  with pytest.raises(ValueError, match='deepmask_checkpoint'):
    resolve_config(tiny_config(model='sharpmask'))


def _embedmask_with_classes(num_classes: int):
  from tests.families.embedmask.test_family import tiny_embedmask_config  # pylint: disable=g-import-not-at-top
  return tiny_embedmask_config(**{
      'embedmask.num_classes': num_classes,
      'embedmask.category_ids': tuple(range(1, num_classes + 1)),
      'embedmask.category_names': tuple('abcd'[:num_classes])})


def test_init_from_refits_only_the_class_logits_for_other_classes(tmp_path):
  from deepmask_jax.train.trainer import setup  # pylint: disable=g-import-not-at-top
  released = _embedmask_with_classes(3)
  family = get_family('embedmask')
  source = jax.tree.map(
      lambda x: np.asarray(x) + 0.25,
      family.init_variables(released, family.build_model(released)))
  save_model(str(tmp_path / 'released'), source, released)
  config = _embedmask_with_classes(2)
  config.init_from = str(tmp_path / 'released')
  _, _, state = setup(bind(config), jax.devices()[:1])
  flat_source = dict(jax.tree_util.tree_leaves_with_path(source['params']))
  refit = []
  for path, value in jax.tree_util.tree_leaves_with_path(state.params):
    if np.shape(value) == np.shape(flat_source[path]):
      np.testing.assert_array_equal(value, flat_source[path])
    else:
      refit.append(jax.tree_util.keystr(path))
  assert refit and all('cls_logits' in name for name in refit)


def test_init_from_another_family_is_refused(tmp_path):
  config = tiny_config()
  model = build_model(config)
  save_model(str(tmp_path / 'deepmask'), initial_variables(config, model),
             config)
  from deepmask_jax.train.initialization import with_pretrained_model  # pylint: disable=g-import-not-at-top
  embedmask = _embedmask_with_classes(3)
  embedmask.init_from = str(tmp_path / 'deepmask')
  with pytest.raises(ValueError, match='holds a deepmask model'):
    with_pretrained_model({'params': {}}, embedmask)
