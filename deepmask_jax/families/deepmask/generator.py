"""`ProposalGenerator`: object-mask proposals for images, from Python.

    generator = deepmask_jax.families.predictor_from_path('runs/sharpmask')
    proposals = generator(image)          # image: [H, W, 3] uint8 RGB
    proposals.masks   # [K, H, W] bool, best first
    proposals.boxes   # [K, 4] float32 [x, y, w, h] of the masks
    proposals.scores  # [K] float32 probabilities

`propose(images)` takes several images at once (canvases of the same shape
run as one batch); `propose_encoded(images)` returns pycocotools RLEs instead
of dense masks, pasting in bounded chunks; `propose_one(image)` is that for
one image, stage after stage. `stream(images)` gives the same results for any
iterable of images with every stage busy at once (host preparation threads,
shared device calls, encoding processes; see its docstring), which is what
the CLI and per-image evaluation use. Grayscale ([H, W] or [H, W, 1]) and RGBA images are accepted
(alpha is dropped).
"""

import collections
import dataclasses
import math
from typing import Iterable, Iterator, Optional, Sequence

import jax
import numpy as np
from PIL import Image

from deepmask_jax.families.deepmask.defaults import inference_config
from deepmask_jax.families.deepmask.paste import MaskPaster, num_taps
from deepmask_jax.families.deepmask.proposals import (ProposalNetwork, WindowLogits,
                                              fetch_rankings, merge_levels)
from deepmask_jax.families.deepmask.pyramid import (GREY, Level, build_canvas,
                                            plan_levels, pyramid_scales)
from deepmask_jax.inference.images import EncodedProposals, as_rgb
from deepmask_jax.inference.rle import (boxes_of, encode_column_major,
                                        encode_packed)
from deepmask_jax.inference.streaming import (StageClock, chunked, prefetch,
                                              process_pool)


@dataclasses.dataclass
class Proposals:
  """Proposals of one image, best first."""
  masks: np.ndarray  # [K, H, W] bool.
  boxes: np.ndarray  # [K, 4] float32 xywh.
  scores: np.ndarray  # [K] float32 in [0, 1].


@dataclasses.dataclass
class ImageWindows:
  """Network output for one image: its levels and chosen windows."""
  levels: list[Level]
  windows: WindowLogits
  height: int
  width: int


def _batch_size(count: int, max_batch: int) -> int:
  """Smallest power of two >= count, at most max_batch (bounds compiles)."""
  return min(1 << max(0, (count - 1).bit_length()), max_batch)


class ProposalGenerator:
  """Dense multi-scale DeepMask / SharpMask proposals (class-agnostic).

  Args:
    model: a DeepMask or SharpMask module (deepmask_jax.models).
    variables: its {'params', 'constants'}.
    config: the model's ConfigDict (`patch.mean/std`, optional `inference`).
    **overrides: inference settings (deepmask_jax/families/deepmask/defaults.py),
      e.g. results_per_image=100, zoom=True.
  """

  categories = ({'id': 1, 'name': 'object'},)
  class_aware = False  # Proposals carry no category.

  def __init__(self, model, variables, config, **overrides):
    self.settings = inference_config(config, **overrides)
    self.variables = jax.device_put(variables)
    self.network = ProposalNetwork(
        model, config.patch.mean, config.patch.std,
        self.settings.results_per_image, self.settings.decode_chunk,
        self.settings.use_deepmask_masks, self.settings.batch_invariant)
    deepmask = self.network.deepmask
    self.object_window = deepmask.object_window
    self.border = deepmask.object_window // 2
    self.scales = pyramid_scales(self.settings)
    smallest = math.floor(self.object_window / max(self.scales))
    self.paster = MaskPaster(
        self.object_window, self.settings.mask_threshold,
        self.settings.bucket_multiple, self.settings.paste_budget,
        self.settings.results_per_image,
        num_taps(self.network.mask_size, smallest))

  # Steps, public so that benchmarks can time them. ------------------------

  def _prepare(self, image: np.ndarray):
    """(levels, canvases) of one RGB uint8 image."""
    height, width = image.shape[:2]
    factor = min(1.0, self.settings.max_image_side / max(height, width))
    if factor < 1.0:
      size = (max(1, round(width * factor)), max(1, round(height * factor)))
      image = np.asarray(Image.fromarray(image).resize(size, Image.BILINEAR))
    working = image.astype(np.float32) / 255.0
    levels = plan_levels(
        working.shape[0], working.shape[1], self.scales, self.border,
        self.network.feature_size, self.settings.bucket_multiple, factor)
    return levels, [build_canvas(working, level, self.border)
                    for level in levels]

  def _prepare_image(self, image):
    """(height, width, levels, canvases) of one image (any `as_rgb` kind)."""
    image = as_rgb(image)
    return image.shape[:2] + self._prepare(image)

  def run_network(self, images: Sequence[np.ndarray]) -> list[ImageWindows]:
    """Network, top-k and mask decoding for a list of images (dispatched
    asynchronously: the logits may still be computing on return)."""
    prepared = [self._prepare_image(image) for image in images]
    # Levels of one image rarely share a canvas shape; batching them would
    # only add compilations (a batch of 2 is another program).
    max_batch = self.settings.max_batch if len(images) > 1 else 1
    return self._windows(prepared, self._dispatch_levels(prepared, max_batch))

  def _dispatch_levels(self, prepared, max_batch: int):
    """Starts the network on the images' canvases, same shapes together.

    Returns (LevelBatches still computing, {(image, level): (batch, slot)}).
    """
    groups = collections.defaultdict(list)
    for i, (_, _, levels, _) in enumerate(prepared):
      for l, level in enumerate(levels):
        groups[level.canvas].append((i, l))
    batches, where = [], {}
    for shape, members in groups.items():
      for first in range(0, len(members), max_batch):
        part = members[first:first + max_batch]
        size = _batch_size(len(part), max_batch)
        canvases = np.full((size,) + shape + (3,), GREY, np.float32)
        valid = np.zeros((size, 2), np.int32)
        for slot, (i, l) in enumerate(part):
          canvases[slot] = prepared[i][3][l]
          valid[slot] = prepared[i][2][l].positions
          where[i, l] = (len(batches), slot)
        batches.append(self.network.run_levels(self.variables, canvases,
                                               valid))
    return batches, where

  def _windows(self, prepared, dispatched) -> list[ImageWindows]:
    """Waits for the levels' rankings (one host copy for all), then merges
    each image's levels and starts decoding its chosen windows."""
    batches, where = dispatched
    rankings = fetch_rankings(batches)
    return [
        self._choose((height, width), levels, batches, rankings,
                     [where[i, l] for l in range(len(levels))])
        for i, (height, width, levels, _) in enumerate(prepared)]

  def _choose(self, image_hw, levels, batches, rankings, places):
    """Merges an image's levels, then decodes the chosen windows."""
    level_probs = [rankings[b][0][slot] for b, slot in places]
    probs, level, rank = merge_levels(level_probs,
                                      self.settings.results_per_image)
    rows = np.zeros(len(rank), np.int32)
    cols = np.zeros(len(rank), np.int32)
    for l, (b, slot) in enumerate(places):
      mine = level == l
      rows[mine] = rankings[b][1][slot][rank[mine]]
      cols[mine] = rankings[b][2][slot][rank[mine]]
    order = np.argsort(level, kind='stable')  # Decode level by level.
    selections = [(places[l][0], places[l][1], rank[order][level[order] == l])
                  for l in np.unique(level)]
    logits = self.network.decode(self.variables, batches, selections)
    logits_row = np.empty(len(order), np.int32)
    logits_row[order] = np.arange(len(order), dtype=np.int32)
    windows = WindowLogits(probs, level, rows, cols, logits, logits_row)
    return ImageWindows(levels, windows, *image_hw)

  def paste(self, image: ImageWindows, column_major: bool = False,
            with_boxes: bool = True,
            ) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(masks, boxes) chunks of an image's proposals, best first."""
    return self.paster.paste(image.windows, image.levels,
                             (image.height, image.width), self.border,
                             column_major, with_boxes)

  encode = staticmethod(encode_column_major)

  # Whole-image calls. -------------------------------------------------------

  def __call__(self, image: np.ndarray) -> Proposals:
    return self.propose([image])[0]

  def propose(self, images: Sequence[np.ndarray]) -> list[Proposals]:
    """Dense masks, boxes and scores for each image."""
    results = []
    for image in self.run_network(images):
      chunks = list(self.paste(image))
      masks = np.zeros((len(image.windows.probs), image.height, image.width),
                       bool)
      boxes = np.zeros((len(masks), 4), np.float32)
      start = 0
      for chunk_masks, chunk_boxes in chunks:
        masks[start:start + len(chunk_masks)] = chunk_masks
        boxes[start:start + len(chunk_masks)] = chunk_boxes
        start += len(chunk_masks)
      results.append(Proposals(masks, boxes, image.windows.probs))
    return results

  def propose_encoded(self, images: Sequence[np.ndarray],
                      ) -> list[EncodedProposals]:
    """RLE masks (pasted in bounded chunks), boxes and scores per image."""
    results = []
    for image in self.run_network(images):
      rles = []
      for masks, _ in self.paste(image, column_major=True, with_boxes=False):
        rles.extend(self.encode(masks))
      results.append(EncodedProposals(rles, boxes_of(rles),
                                      image.windows.probs, image.height,
                                      image.width))
    return results

  def propose_one(self, image: np.ndarray) -> EncodedProposals:
    """One image, start to finish, each stage waiting for the previous one:
    the reference that `stream` must equal."""
    return self.propose_encoded([image])[0]

  def stream(self, images: Iterable, clock: Optional[StageClock] = None,
             ) -> Iterator[EncodedProposals]:
    """`propose_one` of each image, in order, with every stage busy at once.

    Host threads read (when `images` is lazy) and prepare canvases up to
    `prefetch_images` ahead; the levels of `images_per_call` images run in
    shared device calls (same-shape canvases together); while the device
    works on one group the previous group's bit-packed masks are copied to
    the host and RLE-encoded by `encode_workers` processes. Memory is
    bounded by these settings, not by the number of images.

    Args:
      images: any iterable of images (`as_rgb` kinds).
      clock: gets the busy seconds of the stages 'prepare' (host threads),
        'device' (dispatch, waiting for rankings, decode and paste
        dispatch), 'fetch' (host copies of masks) and 'encode' (workers).
    """
    settings = self.settings
    clock = clock or StageClock()
    prepared = prefetch(clock.timed('prepare', self._prepare_image), images,
                        settings.prepare_threads, settings.prefetch_images)
    pool = process_pool(settings.encode_workers)
    encoding = collections.deque()
    bound = 2 * settings.images_per_call + settings.encode_workers
    try:
      previous = []
      for group in chunked(prepared, settings.images_per_call):
        with clock.timing('device'):
          dispatched = self._dispatch_levels(group, settings.max_batch)
        self._encode_later(previous, pool, encoding, clock)
        with clock.timing('device'):
          previous = [(image, self.paster.dispatch_packed(
              image.windows, image.levels, (image.height, image.width),
              self.border)) for image in self._windows(group, dispatched)]
        while encoding and (encoding[0][1].done() or len(encoding) > bound):
          yield self._encoded(*encoding.popleft(), clock)
      self._encode_later(previous, pool, encoding, clock)
      while encoding:
        yield self._encoded(*encoding.popleft(), clock)
    finally:
      pool.shutdown(wait=True, cancel_futures=True)

  @staticmethod
  def _encode_later(dispatched, pool, encoding, clock):
    """Copies the images' packed masks to the host, queues their encoding."""
    for image, chunks in dispatched:
      with clock.timing('fetch'):
        chunks = jax.device_get(chunks)
      encoding.append((image, pool.submit(
          encode_packed, chunks, len(image.windows.probs), image.height,
          image.width)))

  @staticmethod
  def _encoded(image: ImageWindows, future, clock) -> EncodedProposals:
    rles, boxes, seconds = future.result()
    clock.add('encode', seconds)
    return EncodedProposals(rles, boxes, image.windows.probs, image.height,
                            image.width)

  @property
  def compilations(self) -> dict[str, int]:
    """Shapes compiled so far, per jitted function."""
    return dict(self.network.compilations, paste=self.paster.compilations)
