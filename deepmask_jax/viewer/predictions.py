"""What the viewer computes: images, each model's results on them, cached.

An image enters once (an upload's bytes or a file `--images` listed) and is
read as `propose` reads files (grayscale expanded, CMYK and palettes to RGB,
alpha dropped). Each (image, model) pair runs the network once; the browser
then filters, colours and draws the results itself, so a control change
never reaches the server. A result is what the page draws and downloads:

  {'model': name, 'family': str, 'class_aware': bool, 'seconds': float,
   'compiled': bool (the call compiled a program: its time includes that),
   'names': {category id (str): name}, 'colours': [[r, g, b]] (one per
   result, overlay.palette),
   'segm': COCO segm records (image_id 1, RLE counts as str, score), best
   first, exactly as `propose` writes proposals.json,
   'bbox': the same results as box records (xywh), proposals_bbox.json}
"""

import collections
import dataclasses
import hashlib
import io
import os
import threading
import time

import numpy as np
from PIL import Image

from deepmask_jax import families
from deepmask_jax.data.coco_images import image_error
from deepmask_jax.evaluation.categories import (CategoryCheck,
                                                check_output_categories)
from deepmask_jax.evaluation.results_json import proposal_results
from deepmask_jax.inference.images import read_image
from deepmask_jax.inference.overlay import palette
from deepmask_jax.inference.predictor import Predictor

IMAGE_ID = 1  # The one image of a downloaded results file.
KEPT_IMAGES = 8  # Images (and their results) held in memory, newest kept.


class UnreadableImage(ValueError):
  """A file the viewer cannot read as an image; the message names it."""


@dataclasses.dataclass
class ViewerModel:
  """One --model: its predictor and how the page names it."""
  name: str  # The directory's name, as the panel shows it.
  family: str
  predictor: Predictor  # ProposalGenerator or InstanceSegmenter.
  categories: CategoryCheck
  calls: int = 0  # Network calls made so far.


def load_models(paths, **overrides) -> list[ViewerModel]:
  """ViewerModels of model directories or training workdirs (any family).

  Raises what `families.load` raises for a path that holds no model.
  """
  models = []
  for path in paths:
    family, model, variables = families.load(path)
    predictor = family.predictor(model, variables, **overrides)
    name = os.path.basename(os.path.normpath(path))
    models.append(ViewerModel(name, family.name, predictor,
                              check_output_categories(predictor)))
  return models


def decode_image(data: bytes, name: str) -> np.ndarray:
  """[H, W, 3] uint8 RGB of an image file's bytes (read_image's rules).

  Raises UnreadableImage naming `name` and why.
  """
  try:
    return read_image(io.BytesIO(data))
  except (OSError, ValueError, Image.DecompressionBombError) as error:
    reason = image_error(error, num_bytes=len(data))
    raise UnreadableImage(f'{name}: cannot read it as an image ({reason})'
                          ) from error


def png_bytes(image: np.ndarray) -> bytes:
  """A lossless PNG of `image` (the page shows exactly what the model saw)."""
  buffer = io.BytesIO()
  Image.fromarray(image).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


def run_model(model: ViewerModel, image: np.ndarray) -> dict:
  """The result (module doc) of one network call of `model` on `image`."""
  before = model.predictor.compilations
  started = time.perf_counter()
  proposals = model.predictor.propose_encoded([image])[0]
  seconds = time.perf_counter() - started
  model.calls += 1
  proposals = model.categories.relabel(proposals)
  single = model.categories.categories[0]['id']  # Class-agnostic take it.
  segm, bbox = proposal_results(IMAGE_ID, proposals, single)
  return {
      'model': model.name, 'family': model.family,
      'class_aware': bool(model.predictor.class_aware),
      'seconds': seconds,
      'compiled': model.predictor.compilations != before,
      'names': {str(c['id']): c['name']
                for c in model.categories.categories},
      'colours': palette(len(segm)).tolist(),
      'segm': segm, 'bbox': bbox}


@dataclasses.dataclass
class _Entry:
  image: np.ndarray
  name: str
  png: bytes | None = None
  results: dict = dataclasses.field(default_factory=dict)  # model -> result.


class ViewerState:
  """The models, the listed image files and the cache of images and results.

  Thread-safe: requests arrive on server threads; the network runs under
  one lock, so a pair asked twice at once still runs once.
  """

  def __init__(self, models: list[ViewerModel], image_paths=()):
    self.models = models
    self.image_paths = list(image_paths)
    self._entries = collections.OrderedDict()  # key -> _Entry, oldest first.
    self._lock = threading.Lock()  # Guards _entries.
    self._network = threading.Lock()  # One network call at a time.

  def add_upload(self, data: bytes, name: str) -> dict:
    """Reads an uploaded file; returns image_info. Raises UnreadableImage."""
    key = hashlib.sha256(data).hexdigest()[:20]
    with self._lock:
      if key in self._entries:  # The same bytes again: no second reading.
        self._entries.move_to_end(key)
        self._entries[key].name = name
        return self._info(key)
    entry = _Entry(decode_image(data, name), name)
    with self._lock:
      self._entries[key] = entry
      while len(self._entries) > KEPT_IMAGES:
        self._entries.popitem(last=False)
      return self._info(key)

  def add_listed(self, index: int) -> dict:
    """Reads the index-th --images file (no other path is ever read)."""
    if not 0 <= index < len(self.image_paths):
      raise KeyError(f'no listed image {index}')
    path = self.image_paths[index]
    with open(path, 'rb') as f:
      data = f.read()
    return self.add_upload(data, os.path.basename(path))

  def _info(self, key: str) -> dict:
    entry = self._entries[key]
    height, width = entry.image.shape[:2]
    return {'image': key, 'name': entry.name, 'width': width,
            'height': height}

  def _entry(self, key: str) -> _Entry:
    with self._lock:
      if key not in self._entries:
        raise KeyError(f'unknown image {key!r} (upload it again)')
      return self._entries[key]

  def png(self, key: str) -> bytes:
    """The image as PNG (encoded once)."""
    entry = self._entry(key)
    if entry.png is None:
      entry.png = png_bytes(entry.image)
    return entry.png

  def result(self, key: str, model_index: int) -> dict:
    """The result of a model on an image: computed once, then cached."""
    if not 0 <= model_index < len(self.models):
      raise KeyError(f'no model {model_index}')
    entry = self._entry(key)
    with self._network:
      if model_index not in entry.results:
        entry.results[model_index] = run_model(self.models[model_index],
                                               entry.image)
      return entry.results[model_index]

  def describe(self) -> dict:
    """What the page lists: the models and the --images files' names."""
    return {'models': [{'name': m.name, 'family': m.family,
                        'class_aware': bool(m.predictor.class_aware),
                        'warm': m.calls > 0} for m in self.models],
            'images': [os.path.basename(p) for p in self.image_paths]}
