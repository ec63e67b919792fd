"""Viewer test helpers: a fake predictor (no network).

The server thread the tests serve it with: deepmask_jax/viewer/driver.py.
"""

import numpy as np
from pycocotools import mask as mask_utils

from deepmask_jax.evaluation.categories import check_output_categories
from deepmask_jax.inference.images import EncodedProposals
from deepmask_jax.viewer.predictions import ViewerModel


class FakePredictor:
  """Rectangles as masks, scores 0.9, 0.8, ...; counts its calls.

  class_aware: labels cycle through categories 3 ('cat') and 7 ('dog').
  """

  def __init__(self, count: int = 4, class_aware: bool = False):
    self.count = count
    self.class_aware = class_aware
    self.categories = (({'id': 3, 'name': 'cat'}, {'id': 7, 'name': 'dog'})
                       if class_aware else ({'id': 1, 'name': 'object'},))
    self.calls = 0

  @property
  def compilations(self) -> dict:
    return {'network': min(self.calls, 1)}  # Compiles on its first call.

  def propose_encoded(self, images):
    self.calls += 1
    results = []
    for image in images:
      height, width = image.shape[:2]
      masks = np.zeros((height, width, self.count), np.uint8)
      for i in range(self.count):
        masks[i:height // 2 + i, i:width // 2 + i, i] = 1
      rles = mask_utils.encode(np.asfortranarray(masks))
      ids = (np.array([(3, 7)[i % 2] for i in range(self.count)])
             if self.class_aware else None)
      results.append(EncodedProposals(
          rles, mask_utils.toBbox(rles), 0.9 - 0.1 * np.arange(self.count),
          height, width, ids))
    return results


def fake_model(name='fake', **kwargs) -> ViewerModel:
  predictor = FakePredictor(**kwargs)
  return ViewerModel(name, 'embedmask' if predictor.class_aware else
                     'deepmask', predictor, check_output_categories(predictor))
