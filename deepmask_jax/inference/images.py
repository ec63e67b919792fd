"""Images and per-image results shared by every family's inference.

`find_images` lists what a CLI's --images names; `read_image` / `as_rgb` give the [H, W, 3] uint8 RGB arrays the predictors
take; `EncodedProposals` is what they return per image (RLE masks), which
the evaluator, the results JSON and the image CLI read.
"""

import dataclasses
import glob
import os
from typing import Optional

import numpy as np
from PIL import Image


@dataclasses.dataclass
class EncodedProposals:
  """Proposals (or detections) of one image with RLE masks, best first."""
  rles: list  # K dicts {'size': [H, W], 'counts': bytes}.
  boxes: np.ndarray  # [K, 4] float64 xywh.
  scores: np.ndarray  # [K] float32.
  height: int
  width: int
  # [K] dataset category ids of class-aware detections; None for
  # class-agnostic proposals (they take the evaluator's single category).
  category_ids: Optional[np.ndarray] = None


def as_rgb(image) -> np.ndarray:
  """[H, W, 3] uint8 from uint8 [H, W], [H, W, 1], [H, W, 3] or [H, W, 4]."""
  image = np.asarray(image)
  if image.dtype != np.uint8:
    raise TypeError(f'images must be uint8, got {image.dtype}')
  if image.ndim == 2:
    image = image[:, :, None]
  if image.ndim != 3 or image.shape[2] not in (1, 3, 4):
    raise ValueError(f'expected an [H, W], [H, W, 1], [H, W, 3] or [H, W, 4] '
                     f'image, got shape {image.shape}')
  if min(image.shape[:2]) < 1:
    raise ValueError(f'empty image of shape {image.shape}')
  if image.shape[2] == 1:
    return np.repeat(image, 3, axis=2)
  return image[:, :, :3]


def read_image(path: str) -> np.ndarray:
  """[H, W, 3] uint8 RGB of an image file (grayscale expanded, alpha dropped).

  Pixels are taken as stored (no EXIF rotation), as COCO annotations are.
  Raises OSError (PIL's UnidentifiedImageError is one) for unreadable files.
  """
  with Image.open(path) as image:
    image.load()
    if image.mode != 'L':
      image = image.convert('RGB')  # Palette, CMYK, alpha...: plain RGB.
    return as_rgb(np.asarray(image))


IMAGE_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.gif', '.tif', '.tiff',
                    '.webp', '.ppm', '.pgm')


def find_images(spec: str) -> list[str]:
  """The image paths a CLI's --images value names (one image, a folder's
  image files, not recursive, or a glob), sorted."""
  if os.path.isdir(spec):
    names = sorted(os.listdir(spec))
    return [os.path.join(spec, n) for n in names
            if n.lower().endswith(IMAGE_EXTENSIONS)
            and os.path.isfile(os.path.join(spec, n))]
  if os.path.isfile(spec):
    return [spec]
  return sorted(p for p in glob.glob(spec) if os.path.isfile(p))
