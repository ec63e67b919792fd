"""`InstanceSegmenter`: EmbedMask instance masks for images, from Python.

    segmenter = deepmask_jax.families.predictor_from_path('runs/em')
    found = segmenter(image)      # image: [H, W, 3] uint8 RGB
    found.masks    # [K, H, W] bool, best first
    found.boxes    # [K, 4] float32 xyxy in image pixels
    found.scores   # [K] float32
    found.labels   # [K] int32 contiguous labels; found.category_ids the
                   # dataset's ids, segmenter.categories their names

The image is resized and normalised as in training
(deepmask_jax/families/embedmask/geometry.py; the reference resizes with PIL's
bilinear filter at test time, as here), padded into its orientation's canvas
and run through one jitted program: network, thresholds, per-level top-k,
class-aware NMS and the stride-4 mask log-probabilities (embedmask_postprocess).
Masks are then pasted at the original size (embedmask_paste). Programs are
compiled once per canvas (two at most) plus the paster's buckets.
"""

import dataclasses
from typing import Iterable, Iterator, Sequence

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

from deepmask_jax.families.embedmask.geometry import DetectionGeometry
from deepmask_jax.inference.images import EncodedProposals, as_rgb
from deepmask_jax.families.embedmask.paste import (LogProbPaster,
                                                    rescale_boxes,
                                                    xyxy_to_xywh)
from deepmask_jax.families.embedmask.postprocess import DetectSettings, detect
from deepmask_jax.xla_options import network_jit

# config.embedmask fields an InstanceSegmenter(**overrides) may change.
SETTINGS = ('score_threshold', 'pre_nms_top_n', 'nms_threshold',
            'results_per_image', 'mask_threshold', 'mask_box_padding')


@dataclasses.dataclass
class Instances:
  """Detections of one image, best first."""
  masks: np.ndarray  # [K, H, W] bool.
  boxes: np.ndarray  # [K, 4] float32 xyxy.
  scores: np.ndarray  # [K] float32.
  labels: np.ndarray  # [K] int32, 0..C-1.
  category_ids: np.ndarray  # [K] int64 dataset ids.


def categories_of(embedmask_config) -> tuple:
  """({'id', 'name'}, ...) of the model's labels (generic names if unknown)."""
  ids = tuple(embedmask_config.get('category_ids', ()) or ())
  names = tuple(embedmask_config.get('category_names', ()) or ())
  if len(ids) != embedmask_config.num_classes:
    ids = tuple(range(1, embedmask_config.num_classes + 1))
    names = ()
  if len(names) != len(ids):
    names = tuple(f'class {i}' for i in ids)
  return tuple({'id': int(i), 'name': str(n)} for i, n in zip(ids, names))


class InstanceSegmenter:
  """EmbedMask inference on whole images.

  Args:
    model: an EmbedMask module; variables: its {'params', 'constants'}.
    config: the model's ConfigDict (`detection`, `embedmask`).
    **overrides: config.embedmask inference settings (SETTINGS), e.g.
      score_threshold=0.3.
  """

  class_aware = True

  def __init__(self, model, variables, config, **overrides):
    settings = config.embedmask.to_dict()
    for name, value in overrides.items():
      if name not in SETTINGS:
        raise KeyError(f'unknown EmbedMask inference setting {name!r}; '
                       f'choose from {SETTINGS}')
      if value is not None:
        settings[name] = value
    self.detection = config.detection
    self.settings = DetectSettings.from_config(
        ml_collections.ConfigDict(settings))
    self.paster = LogProbPaster(settings['mask_threshold'])
    self.categories = categories_of(config.embedmask)
    self.category_ids = np.array([c['id'] for c in self.categories])
    self.variables = jax.device_put(variables)
    self._canvases = set()

    def run(variables, canvases, image_hw):
      return detect(model.apply(variables, canvases), image_hw,
                    self.settings)
    self._run = network_jit(run)

  def prepare(self, image: np.ndarray):
    """(canvas float32 [1, H, W, 3], resized (h, w)) of an RGB uint8 image."""
    height, width = image.shape[:2]
    geometry = DetectionGeometry.from_config(self.detection)
    resized = geometry.fitted_size(height, width)
    if resized != (height, width):
      image = np.asarray(Image.fromarray(image).resize(
          (resized[1], resized[0]), Image.BILINEAR))
    pixels = image.astype(np.float32)
    if self.detection.bgr:
      pixels = pixels[..., ::-1]
    pixels = ((pixels - np.asarray(self.detection.pixel_mean, np.float32))
              / np.asarray(self.detection.pixel_std, np.float32))
    canvas_hw = geometry.canvas_of(height, width)
    canvas = np.zeros((1,) + canvas_hw + (3,), np.float32)
    canvas[0, :resized[0], :resized[1]] = pixels
    return canvas, resized

  def detect(self, image: np.ndarray):
    """(host detections of `detect` for one image, resized (h, w))."""
    canvas, resized = self.prepare(image)
    self._canvases.add(canvas.shape)
    found = self._run(self.variables, jnp.asarray(canvas),
                      jnp.asarray([resized], jnp.int32))
    found = jax.device_get({k: v[0] for k, v in found.items()})
    keep = np.flatnonzero(found['valid'])
    return {k: v[keep] for k, v in found.items()}, resized

  def _instances(self, image: np.ndarray):
    image = as_rgb(image)
    original = image.shape[:2]
    found, resized = self.detect(image)
    if len(found['scores']):
      masks = self.paster(found['mask_logprob'], resized, original)
    else:
      masks = np.zeros((0,) + original, bool)
    boxes = rescale_boxes(found['boxes'], resized, original)
    labels = found['labels'].astype(np.int32)
    return (masks, boxes, found['scores'].astype(np.float32), labels,
            self.category_ids[labels])

  def __call__(self, image: np.ndarray) -> Instances:
    return Instances(*self._instances(image))

  def propose_encoded(self, images: Sequence[np.ndarray]
                      ) -> list[EncodedProposals]:
    """RLE masks, xywh boxes (+1 widths), scores and category ids per image."""
    results = []
    for image in images:
      masks, boxes, scores, _, category_ids = self._instances(image)
      rles = (mask_utils.encode(np.asfortranarray(
          masks.transpose(1, 2, 0).astype(np.uint8))) if len(masks) else [])
      results.append(EncodedProposals(
          rles, xyxy_to_xywh(boxes), scores, masks.shape[1], masks.shape[2],
          category_ids))
    return results

  def stream(self, images: Iterable) -> Iterator[EncodedProposals]:
    """`propose_encoded` of each image, in order (one image per call)."""
    for image in images:
      yield self.propose_encoded([image])[0]

  @property
  def compilations(self) -> dict:
    """Compiled programs: the network (one per canvas) and mask pasting."""
    return {'network': len(self._canvases),
            'paste': self.paster.compilations}

