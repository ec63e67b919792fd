"""pycocotools RLEs of column-major masks, in the caller or a worker process.

This module imports only numpy and pycocotools (no JAX), so the encoding
worker processes of `ProposalGenerator.stream` start quickly.
"""

import time
from typing import Sequence

import numpy as np
from pycocotools import mask as mask_utils


def encode_column_major(masks: np.ndarray) -> list:
  """pycocotools RLEs of masks given as bool [n, W, H].

  [n, W, H] in C order is [H, W, n] in Fortran order, the layout pycocotools'
  encoder reads, so no pixel is copied.
  """
  masks = np.ascontiguousarray(masks).view(np.uint8)
  return mask_utils.encode(masks.transpose(2, 1, 0))


def boxes_of(rles: list) -> np.ndarray:
  """[K, 4] float64 xywh boxes of RLEs (pycocotools toBbox)."""
  return mask_utils.toBbox(rles) if rles else np.zeros((0, 4), np.float64)


def encode_packed(chunks: Sequence[np.ndarray], count: int, height: int,
                  width: int):
  """RLEs and boxes of bit-packed column-major mask chunks.

  Args:
    chunks: uint8 [c, W_c, H_c / 8] each (`MaskPaster.dispatch_packed`),
      masks on a canvas W_c >= width, H_c >= height, the last chunk padded.
    count: K, the number of real masks.
    height, width: the image's size.
  Returns:
    (rles [K dicts], boxes float64 [K, 4] xywh, seconds spent).
  """
  start = time.perf_counter()
  rles = []
  for packed in chunks:
    take = min(len(packed), count - len(rles))
    masks = np.unpackbits(packed[:take], axis=-1)[:, :width, :height]
    rles.extend(encode_column_major(masks.view(bool)))
  return rles, boxes_of(rles), time.perf_counter() - start
