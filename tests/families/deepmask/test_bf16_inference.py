"""bf16 inference through `config.dtype`: nearly the proposals of float32."""

import numpy as np
import pytest

from deepmask_jax.families import build_model, get_family
from tests.conftest import max_difference, tiny_config
from tests.families.deepmask.test_generator import image_of

NUM = 20


def iou(a: np.ndarray, b: np.ndarray) -> float:
  union = np.logical_or(a, b).sum()
  return float(np.logical_and(a, b).sum() / union) if union else 1.0


@pytest.mark.parametrize('kind', ['deepmask', 'sharpmask'])
def test_bf16_config_gives_nearly_the_float32_top_proposals(kind, request):
  model, variables, config = request.getfixturevalue(f'tiny_{kind}')
  bf16_config = tiny_config(model=kind, dtype='bfloat16')
  bf16_model = build_model(bf16_config)
  family = get_family(kind)
  image = image_of(90, 120, seed=5)
  f32 = family.predictor(config, model, variables, results_per_image=NUM)(image)
  bf16 = family.predictor(bf16_config, bf16_model, variables,
                          results_per_image=NUM)(image)
  assert bf16.scores.dtype == f32.scores.dtype
  assert 0 < max_difference(bf16.scores, f32.scores)  # Really bf16.
  # Scores are probabilities: bf16 moves them by far less than 0.01.
  np.testing.assert_allclose(np.sort(bf16.scores), np.sort(f32.scores),
                             atol=0.01)
  # Each of the best float32 proposals is found among bf16's (near-ties
  # may swap ranks, so match by mask).
  for mask in f32.masks[:NUM // 2]:
    assert max(iou(mask, other) for other in bf16.masks) > 0.9
