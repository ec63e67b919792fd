"""Both families' inference objects are `Predictor`s, and a class missing one
of its members is not."""

from deepmask_jax.families import get_family
from deepmask_jax.inference.predictor import Predictor
from tests.families.embedmask.test_family import tiny_embedmask_config


def test_deepmask_proposal_generator_is_a_predictor(tiny_deepmask):
  model, variables, config = tiny_deepmask
  assert isinstance(get_family('deepmask').predictor(config, model, variables),
                    Predictor)


def test_embedmask_segmenter_is_a_predictor():
  config = tiny_embedmask_config()
  family = get_family('embedmask')
  model = family.build_model(config)
  variables = family.init_variables(config, model)
  assert isinstance(family.predictor(config, model, variables), Predictor)


def test_an_object_without_stream_is_not_a_predictor():

  class NoStream:
    categories = ({'id': 1, 'name': 'object'},)
    class_aware = False
    variables = {}
    compilations = {}

    def propose_encoded(self, images):
      return []

  assert not isinstance(NoStream(), Predictor)
