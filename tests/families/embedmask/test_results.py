"""EmbedMask detections as COCO results records."""

import numpy as np
from pycocotools import mask as mask_utils
import pytest

from deepmask_jax.families.embedmask.results import (dataset_category_ids,
                                                     detection_results)


def test_labels_map_through_the_category_ids():
  assert dataset_category_ids([2, 0, 1], [7, 9, 11]) == [11, 7, 9]
  with pytest.raises(ValueError):
    dataset_category_ids([3], [7, 9, 11])


def test_detection_results_paste_rescale_and_drop_invalid():
  # A 32 x 48 canvas holding a 24 x 40 image of original size 48 x 80.
  logprob = np.full((3, 8, 12), -10.0, np.float32)
  logprob[0, 2:4, 3:6] = 0.0  # Probability 1 inside.
  detections = {'boxes': np.array([[12, 8, 23, 15], [0, 0, 5, 5], [0] * 4]),
                'scores': np.array([0.8, 0.3, 0.0]),
                'labels': np.array([1, 0, 0]),
                'valid': np.array([True, True, False]),
                'mask_logprob': logprob}
  segm, bbox = detection_results(4, detections, (24, 40), (48, 80), [3, 5])
  assert len(segm) == len(bbox) == 2
  assert [r['category_id'] for r in segm] == [5, 3]
  assert bbox[0]['bbox'] == [24, 16, 23, 15]  # x2 scale; w = 46 - 24 + 1.
  mask = mask_utils.decode(segm[0]['segmentation'])
  assert mask.shape == (48, 80)
  ys, xs = np.nonzero(mask)
  # Cells 2..3 x 3..5 resized x8 (64 x 96, cropped to 48 x 80): centres of
  # cells at 8 i + 3.5; the log-probability climbs from -10 to 0 between the
  # centres and passes ln(0.53) 6.35% before the inner one: rows 19..28,
  # columns 27..44.
  assert (ys.min(), ys.max(), xs.min(), xs.max()) == (19, 28, 27, 44)
  # At the four corners both lerps stop 6.25% short: -10 (1 - 0.9375^2).
  assert mask.sum() == 10 * 18 - 4
  assert mask_utils.decode(segm[1]['segmentation']).sum() == 0
