"""DeepMask/SharpMask patch geometry (the reference DataSampler.lua).

`PatchSampler` decides, in numpy, which image and object a sample uses, its
window in image pixels, its flip and its score label. Every random number is
drawn from `np.random.default_rng([seed, stream, sample_id])`, so any sample
can be redrawn anywhere, in any order, with no sampler state. The pixels are
cut and resized by the TF ops in patch_ops.py; nothing here imports
TensorFlow.

Coordinates are continuous image pixels, x right and y down; pixel (row i,
column j) covers [j, j+1) x [i, i+1), as COCO boxes [x, y, w, h] assume. A
window is integer (x0, y0, side): columns x0..x0+side-1, rows y0..y0+side-1.
"""

import dataclasses
import math

import numpy as np

from deepmask_jax.data.object_index import ObjectIndex
from deepmask_jax.families.deepmask.patch_geometry import window_size

# Random streams, so mask, score and head draws for one index are independent.
HEAD_STREAM = 0
MASK_STREAM = 1
SCORE_STREAM = 2

_NEGATIVE_SCALES = np.arange(-3.0, 2.0 + 1e-9, 0.25)  # log2 zooms tried.
_NEGATIVE_TRIES = 100
_NEGATIVE_SCALE_REACH = 2.5  # Objects binned within +-10 quarter-octaves count.
_MIN_SCORE_WINDOW = 10  # Smallest score window side (image px).
_NO_BIN = np.iinfo(np.int32).min


@dataclasses.dataclass(frozen=True)
class PatchGeometry:
  """Patch sizes and jitter (config.patch); see the reference spec, 1.1 and 3."""
  object_window: int = 160  # iSz.
  context: int = 16
  label_size: int = 112  # gSz.
  shift: float = 16.0  # Centre jitter, +-px in the patch.
  scale_jitter: float = 0.25  # +-log2 units.
  negative_distance: float = 48.0  # px in the patch frame.
  flip: bool = True

  @classmethod
  def from_config(cls, patch_config) -> 'PatchGeometry':
    return cls(object_window=int(patch_config.object_window),
               context=int(patch_config.context),
               label_size=int(patch_config.label_size),
               shift=float(patch_config.shift),
               scale_jitter=float(patch_config.scale_jitter),
               negative_distance=float(patch_config.negative_distance),
               flip=bool(patch_config.flip))

  @property
  def window_size(self) -> int:
    """wSz: side of the network input patch (192)."""
    return window_size(self.object_window, self.context)

  @property
  def object_size(self) -> int:
    """objSz: the canonical max side of an object in the patch (92)."""
    return math.ceil(self.object_window * 128 / 224)


@dataclasses.dataclass(frozen=True)
class PatchSpecs:
  """Where B patches come from; arrays of length B (numpy).

  Attributes:
    image_index: int32 [B], record index in the split.
    object_slot: int32 [B], the masked object's slot in the record, -1 for
      score samples.
    object_index: int32 [B], row in the ObjectIndex of the masked object (mask
      samples) or the centred object (score positives), else -1.
    centre: float32 [B, 2], unrounded window centre (x, y), image px.
    log2_zoom: float32 [B], patch px per image px is 2**log2_zoom.
    window: int32 [B, 3], the rounded input window (x0, y0, side), image px.
    label_window: int32 [B, 3], its central object_window/window_size part.
    flip: bool [B], mirror image and label horizontally.
    score: float32 [B], +1 (object centred at canonical scale) or -1.
  """
  image_index: np.ndarray
  object_slot: np.ndarray
  object_index: np.ndarray
  centre: np.ndarray
  log2_zoom: np.ndarray
  window: np.ndarray
  label_window: np.ndarray
  flip: np.ndarray
  score: np.ndarray


def _round(x):
  """Rounds half away from zero, as torch.round does (np.round goes to even)."""
  return np.sign(x) * np.floor(np.abs(x) + 0.5)


def square_window(centre_x, centre_y, side):
  """Integer (x0, y0, side) of the square of `side` centred on the point."""
  side_px = max(int(_round(side)), 1)
  return (int(_round(centre_x - side / 2)), int(_round(centre_y - side / 2)),
          side_px)


def scale_bins(max_dims: np.ndarray, object_size: int) -> np.ndarray:
  """createBBstruct binning: int32 bin s per object, or a sentinel if none.

  s is the smallest integer in [-32, 32] with
  objSz*2^((s-1)/4) < maxDim <= objSz*2^((s+1)/4); zooming the image by
  2^(-s/4) brings the object's max side into (objSz, objSz*2^(1/4)].
  """
  steps = np.arange(-32, 33)
  lower = object_size * 2.0 ** ((steps - 1) / 4)
  upper = object_size * 2.0 ** ((steps + 1) / 4)
  fits = (max_dims[:, None] > lower) & (max_dims[:, None] <= upper)
  return np.where(fits.any(axis=1), steps[np.argmax(fits, axis=1)],
                  _NO_BIN).astype(np.int32)


def is_mask_step(seed: int, step: int, hfreq: float) -> bool:
  """The head trained at `step` (DataLoader): mask iff U(0,1) > hfreq.

  A pure function of (seed, step), so every process agrees.
  """
  if hfreq <= 0:  # Only mask batches (SharpMask, evalPerPatch).
    return True
  return bool(np.random.default_rng([seed, HEAD_STREAM, step]).random() > hfreq)


class PatchSampler:
  """Draws PatchSpecs for mask and score samples from an ObjectIndex."""

  def __init__(self, index: ObjectIndex, geometry: PatchGeometry):
    self.index = index
    self.geometry = geometry
    self._centres = index.bbox[:, :2] + index.bbox[:, 2:] / 2
    self._object_image = index.object_image
    sources = index.mask_sources()
    self.mask_categories = np.unique(index.label[sources])
    self._category_objects = [np.flatnonzero(sources & (index.label == c))
                              for c in self.mask_categories]
    # Score sampling: every annotation counts, crowds and tiny ones included.
    self.bins = scale_bins(index.bbox[:, 2:].max(axis=1), geometry.object_size)
    binned = np.bincount(self._object_image[self.bins != _NO_BIN],
                         minlength=index.num_images)
    self.score_images = np.flatnonzero(binned > 0)

  def _image_objects(self, image: int) -> np.ndarray:
    return np.arange(self.index.first_object[image],
                     self.index.first_object[image + 1])

  def mask_specs(self, seed: int, sample_ids) -> PatchSpecs:
    """Category-balanced, jittered object patches (DataSampler:maskSampling).

    A category is drawn uniformly among those with a valid object, then one of
    its valid objects. jitterBox: s = log2(maxDim/objSz) + U(-scale_jitter,
    scale_jitter); the centre moves by U(-shift, shift)*2^s in x and y; the
    window side is wSz*2^s, so in the patch the object is centred to +-shift
    px and its max side is objSz*2^(+-scale_jitter) px.
    """
    if not len(self.mask_categories):
      raise ValueError('no object qualifies as a mask sample (all crowd, '
                       'area < 100 or box side < 5)')
    g = self.geometry
    rows = []
    for sample_id in sample_ids:
      rng = np.random.default_rng([seed, MASK_STREAM, int(sample_id)])
      objects = self._category_objects[rng.integers(len(self.mask_categories))]
      obj = int(objects[rng.integers(len(objects))])
      _, _, w, h = self.index.bbox[obj]
      s = math.log2(max(w, h) / g.object_size) + rng.uniform(-g.scale_jitter,
                                                              g.scale_jitter)
      jitter = rng.uniform(-g.shift, g.shift, size=2) * 2.0 ** s
      centre = self._centres[obj] + jitter
      rows.append((self._object_image[obj], obj, centre, -s,
                   g.window_size * 2.0 ** s, rng.random()))
    return self._specs(rows, is_mask=True)

  def score_specs(self, seed: int, sample_ids) -> PatchSpecs:
    """Score samples (DataSampler:scoreSampling): half positive, half negative.

    An image with at least one annotation is drawn uniformly. A positive takes
    a random scale bin present in the image and a random object of that bin,
    with the window centred exactly on its box; a negative is
    `negative_point`. The window side is max(wSz*2^-log2_zoom, 10).
    """
    if not len(self.score_images):
      raise ValueError('no image has an annotation to sample scores from')
    rows = []
    for sample_id in sample_ids:
      rng = np.random.default_rng([seed, SCORE_STREAM, int(sample_id)])
      image = int(self.score_images[rng.integers(len(self.score_images))])
      if rng.random() < 0.5:
        obj, centre, log2_zoom = self._positive(rng, image)
      else:
        obj = -1
        *centre, log2_zoom, _ = self.negative_point(rng, image)
      side = max(self.geometry.window_size * 2.0 ** -log2_zoom,
                 _MIN_SCORE_WINDOW)
      rows.append((image, obj, centre, log2_zoom, side, rng.random()))
    return self._specs(rows, is_mask=False)

  def _positive(self, rng, image):
    objects = self._image_objects(image)
    bins = self.bins[objects]
    present = np.unique(bins[bins != _NO_BIN])
    chosen = present[rng.integers(len(present))]
    candidates = objects[bins == chosen]
    obj = int(candidates[rng.integers(len(candidates))])
    return obj, self._centres[obj], -chosen / 4

  def negative_point(self, rng, image: int):
    """A window centre far from every object of similar scale.

    The log2 zoom is uniform in {-3, -2.75, ..., 2} and the position is a
    uniform integer pixel of the image zoomed by 2^zoom. The draw is rejected
    if an object whose scale bin zoom is within +-2.5 of it has its centre
    closer than `negative_distance` px; after 100 rejections the last draw is
    kept.

    Unlike the reference, which compares the candidate (in the frame of its
    own zoom) against object centres stored in the frame of *each object's*
    zoom, every distance here is measured in the candidate's zoomed frame, so
    it is the distance as seen in the patch.

    Returns:
      (x, y, log2_zoom, accepted): the centre in image px, the zoom, and
      whether the draw passed the distance rule.
    """
    objects = self._image_objects(image)
    objects = objects[self.bins[objects] != _NO_BIN]
    object_zoom = -self.bins[objects] / 4
    height, width = self.index.image_size[image]
    zooms = _NEGATIVE_SCALES[rng.integers(len(_NEGATIVE_SCALES),
                                          size=_NEGATIVE_TRIES)]
    factor = 2.0 ** zooms
    cells = np.maximum(np.floor(np.stack([width * factor, height * factor], 1)),
                       1)
    # Pixel centres of the zoomed image, in zoomed px.
    points = np.floor(rng.random((_NEGATIVE_TRIES, 2)) * cells) + 0.5
    near_scale = (np.abs(object_zoom[None, :] - zooms[:, None])
                  <= _NEGATIVE_SCALE_REACH + 1e-6)
    offsets = points[:, None, :] - self._centres[objects][None] * factor[:, None, None]
    close = np.hypot(offsets[..., 0], offsets[..., 1]) < self.geometry.negative_distance
    rejected = (near_scale & close).any(axis=1)
    accepted = np.flatnonzero(~rejected)
    pick = accepted[0] if len(accepted) else _NEGATIVE_TRIES - 1
    x, y = points[pick] / factor[pick]
    return float(x), float(y), float(zooms[pick]), bool(len(accepted))

  def _specs(self, rows, is_mask: bool) -> PatchSpecs:
    """PatchSpecs from rows (image, object, centre, log2_zoom, side, flip_draw)."""
    g = self.geometry
    image, obj, centre, log2_zoom, side, flip_draw = (
        np.asarray(column) for column in zip(*rows))
    windows = np.array([square_window(x, y, s) for (x, y), s in zip(centre, side)],
                       np.int32).reshape(-1, 3)
    label_sides = windows[:, 2] * g.object_window / g.window_size
    label_windows = np.array(
        [square_window(x0 + s / 2, y0 + s / 2, label_side)
         for (x0, y0, s), label_side in zip(windows, label_sides)],
        np.int32).reshape(-1, 3)
    slots = self.index.object_slot[obj] if is_mask else np.full(len(rows), -1)
    return PatchSpecs(
        image_index=image.astype(np.int32),
        object_slot=slots.astype(np.int32),
        object_index=obj.astype(np.int32),
        centre=centre.astype(np.float32).reshape(-1, 2),
        log2_zoom=log2_zoom.astype(np.float32),
        window=windows,
        label_window=label_windows,
        flip=g.flip & (flip_draw < 0.5),
        score=np.where(is_mask | (obj >= 0), 1.0, -1.0).astype(np.float32))
