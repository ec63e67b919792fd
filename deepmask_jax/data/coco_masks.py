"""COCO segmentations (polygons, uncompressed or compressed RLE) as masks.

pycocotools does the work; no TensorFlow here.
"""

import numpy as np
from pycocotools import mask as mask_utils


def segmentation_rle(segmentation, height, width):
  """Segmentation (polygons, uncompressed or compressed RLE) -> one RLE."""
  if isinstance(segmentation, list):
    return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
  if isinstance(segmentation['counts'], list):
    return mask_utils.frPyObjects(segmentation, height, width)
  counts = segmentation['counts']
  return {'size': list(segmentation['size']),
          'counts': counts.encode('ascii') if isinstance(counts, str) else counts}


def rasterize(segmentation, height, width) -> np.ndarray:
  """Segmentation -> binary mask, uint8 (height, width) with values 0/1.

  Same result as pycocotools `COCO.annToMask` for the annotation.
  """
  return mask_utils.decode(segmentation_rle(segmentation, height, width))


def segmentation_area(segmentation, height: int, width: int) -> float:
  """Pixels inside the segmentation, as pycocotools counts them."""
  return float(mask_utils.area(segmentation_rle(segmentation, height, width)))
