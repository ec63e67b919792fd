"""ProposalGenerator: output format, image kinds, batching, RLE, bounds."""

import numpy as np
import pytest
from pycocotools import mask as mask_utils

from deepmask_jax.families import predictor_from_path
from deepmask_jax.families.deepmask.generator import ProposalGenerator
from deepmask_jax.models.store import save_model

NUM = 30


def image_of(height, width, seed=0):
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
  image[height // 4:height // 2, width // 3:2 * width // 3] = 250
  return image


@pytest.fixture(scope='module', params=['deepmask', 'sharpmask'])
def generator(request, tiny_deepmask, tiny_sharpmask):
  model, variables, config = (tiny_deepmask if request.param == 'deepmask'
                              else tiny_sharpmask)
  return ProposalGenerator(model, variables, config, results_per_image=NUM)


def test_proposals_are_masks_boxes_and_sorted_scores(generator):
  proposals = generator(image_of(60, 80))
  assert proposals.masks.shape == (NUM, 60, 80)
  assert proposals.masks.dtype == bool
  assert proposals.boxes.shape == (NUM, 4)
  assert proposals.scores.shape == (NUM,)
  assert np.all(np.diff(proposals.scores) <= 0)
  assert np.all((proposals.scores >= 0) & (proposals.scores <= 1))
  assert proposals.masks.any(axis=(1, 2)).sum() > NUM // 2


def test_encoded_proposals_decode_to_the_dense_masks(generator):
  image = image_of(50, 70, seed=1)
  dense = generator(image)
  encoded = generator.propose_encoded([image])[0]
  assert all(isinstance(r['counts'], bytes) for r in encoded.rles)
  decoded = mask_utils.decode(encoded.rles).transpose(2, 0, 1)
  np.testing.assert_array_equal(decoded.astype(bool), dense.masks)
  np.testing.assert_array_equal(encoded.boxes, dense.boxes)
  np.testing.assert_array_equal(encoded.scores, dense.scores)


def test_several_images_per_call_equal_one_at_a_time(generator):
  images = [image_of(60, 80, seed=2), image_of(60, 80, seed=3),
            image_of(40, 90, seed=4)]
  together = generator.propose(images)
  for image, batched in zip(images, together):
    alone = generator(image)
    np.testing.assert_allclose(batched.scores, alone.scores, rtol=1e-5)
    assert (batched.masks != alone.masks).mean() < 1e-3


def test_grayscale_and_alpha_images_are_accepted(generator):
  gray = image_of(40, 50)[:, :, 0]
  rgb = generator(np.stack([gray] * 3, axis=2))
  for variant in (gray, gray[:, :, None],
                  np.dstack([np.stack([gray] * 3, axis=2),
                             np.full_like(gray, 7)])):
    np.testing.assert_array_equal(generator(variant).masks, rgb.masks)


def test_tiny_image_gives_fewer_proposals_at_full_resolution(generator):
  proposals = generator(image_of(3, 2))
  assert 0 < len(proposals.scores) <= NUM
  assert proposals.masks.shape[1:] == (3, 2)


def test_large_image_is_downscaled_but_pasted_at_full_size(tiny_deepmask):
  model, variables, config = tiny_deepmask
  small = ProposalGenerator(model, variables, config, results_per_image=10,
                            max_image_side=64)
  proposals = small(image_of(200, 100))
  assert proposals.masks.shape == (10, 200, 100)
  assert proposals.masks.any(axis=(1, 2)).all()


def test_compilations_stay_bounded_by_the_buckets(tiny_deepmask):
  model, variables, config = tiny_deepmask
  generator = ProposalGenerator(model, variables, config, results_per_image=10)
  for height, width in [(60, 80), (61, 79), (58, 83), (60, 80)]:
    generator(image_of(height, width))
  # Same-bucket sizes reuse the programs of the first image.
  first = ProposalGenerator(model, variables, config, results_per_image=10)
  first(image_of(60, 80))
  assert generator.compilations == first.compilations


def test_from_path_reads_a_model_directory(tmp_path, tiny_deepmask):
  model, variables, config = tiny_deepmask
  save_model(str(tmp_path / 'model'), variables, config)
  loaded = predictor_from_path(str(tmp_path / 'model'), results_per_image=5)
  direct = ProposalGenerator(model, variables, config, results_per_image=5)
  image = image_of(30, 40)
  np.testing.assert_allclose(loaded(image).scores, direct(image).scores,
                             rtol=1e-6)


def test_sharpmask_deepmask_mode_uses_the_deepmask_masks(tiny_sharpmask):
  model, variables, config = tiny_sharpmask
  image = image_of(40, 60)
  dm_mode = ProposalGenerator(model, variables, config, results_per_image=8,
                              use_deepmask_masks=True)(image)
  deepmask = ProposalGenerator(
      model.deepmask, {'params': variables['params']['deepmask'],
                       'constants': variables['constants']['deepmask']},
      config, results_per_image=8)(image)
  np.testing.assert_allclose(dm_mode.scores, deepmask.scores, rtol=1e-6)
  np.testing.assert_array_equal(dm_mode.masks, deepmask.masks)
