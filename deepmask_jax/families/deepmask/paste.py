"""Pasting window mask logits into full-resolution binary masks, on the device.

Reference getTopMasks: a window's S x S logits (S = 56 for DeepMask, 160 for
SharpMask, both covering the 160-px object window) are resized to
sz = floor(160 / s) pixels with Torch `image.scale(..., 'bilinear')`,
thresholded at logit(0.2) and written with their top-left pixel at
(floor((16 r - 80) / s), floor((16 c - 80) / s)), clipped to the image.
`image.scale` interpolates align-corners when enlarging and averages over
boxes when shrinking (torch/image `scaleLinear_rowcol`); both are separable,
so each output row (and column) reads at most `num_taps` source rows.

Masks are made on the device chunk by chunk of windows (three jitted
programs: tap tables and the first resizing pass, the second pass with the
threshold and clipping, the boxes), on a canvas whose sides are the image's
rounded up to `bucket_multiple` (so few shapes compile); boxes ([x, y, w, h],
equal to pycocotools `toBbox`) are reduced from the masks. With `column_major` the masks come as [n, W, H]: each mask is
then laid out in Fortran order, as pycocotools' RLE encoder reads it.
"""

import math
from typing import Iterator, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.families.deepmask.pyramid import (Level, pasted_size, round_up,
                                            window_origins)
from deepmask_jax.families.deepmask.proposals import WindowLogits


def probability_logit(probability: float) -> float:
  """logit(p): a sigmoid output exceeds p exactly where its logit exceeds this."""
  return math.log(probability / (1.0 - probability))


def num_taps(source: int, smallest_size: int) -> int:
  """Source pixels one output pixel may read when resizing source -> size."""
  return max(2, math.ceil(source / smallest_size) + 1)


def resize_taps(out_index: jax.Array, size: jax.Array, source: int,
                taps: int):
  """Torch image.scale bilinear weights from `source` to `size` pixels.

  Args:
    out_index: [n, P] int output pixel indices (clipped to [0, size)).
    size: [n] int output sizes, one per window.
    source: S, the input side.
    taps: T, source pixels read per output pixel.
  Returns:
    (index [n, P, T] int32, weight [n, P, T] float32).
  """
  size = size[:, None]
  u = jnp.clip(out_index, 0, size - 1).astype(jnp.float32)
  size_f = size.astype(jnp.float32)
  # Enlarging: align corners, source position u * (S - 1) / (size - 1).
  position = u * ((source - 1) / jnp.maximum(size_f - 1, 1.0))
  low = jnp.floor(position)
  frac = position - low
  up_index = low[..., None] + jnp.arange(taps)
  up_weight = jnp.where(jnp.arange(taps) == 0, (1.0 - frac)[..., None],
                        jnp.where(jnp.arange(taps) == 1, frac[..., None], 0.))
  # Shrinking (or copying): mean over the box [u, u + 1) * S / size.
  ratio = source / size_f
  start, stop = u * ratio, (u + 1.0) * ratio
  down_index = jnp.floor(start)[..., None] + jnp.arange(taps)
  overlap = (jnp.minimum(down_index + 1.0, stop[..., None])
             - jnp.maximum(down_index, start[..., None]))
  down_weight = jnp.where(down_index < source, jnp.maximum(overlap, 0.0),
                          0.0) / (stop - start)[..., None]
  enlarge = (size > source)[..., None]
  index = jnp.where(enlarge, up_index, down_index)
  weight = jnp.where(enlarge, up_weight, down_weight)
  return jnp.clip(index, 0, source - 1).astype(jnp.int32), weight


def _interpolate_rows(values, index, weight):
  """values [n, S, X], index/weight [n, P, T] -> [n, P, X].

  One row gather per tap (XLA runs these as row copies, several times faster
  on CPU than one gather of all taps followed by a reduction).
  """
  total = 0.0
  for tap in range(index.shape[-1]):
    rows = jnp.take_along_axis(values, index[:, :, tap, None], axis=1)
    total = total + rows * weight[:, :, tap, None]
  return total


def _boxes(masks: jax.Array, row_axis: int) -> jax.Array:
  """[n, 4] float32 [x, y, w, h] bounding boxes (zeros for empty masks)."""

  def extent(axis):
    hit = masks.any(axis=3 - axis)  # [n, length of `axis`]
    first = jnp.argmax(hit, axis=1)
    last = hit.shape[1] - 1 - jnp.argmax(hit[:, ::-1], axis=1)
    return first, last - first + 1, hit.any(axis=1)

  y, h, _ = extent(row_axis)
  x, w, nonempty = extent(3 - row_axis)
  box = jnp.stack([x, y, w, h], axis=1).astype(jnp.float32)
  return jnp.where(nonempty[:, None], box, 0.0)


def _first_pass(logits, rows, sizes, origin_y, origin_x, image_hw, canvas,
                taps, column_major):
  """Tap tables of both axes and the first resizing pass.

  Returns (first [n, S, P1], second-axis (index, weight, valid) [n, P2, T] /
  [n, P2], first-axis valid [n, P1]). Resizing rows first leaves [n, W, H]
  after the second pass, the column-major layout; columns first gives
  [n, H, W].
  """
  source = logits.shape[-1]
  windows = logits[rows]

  def axis_terms(origin, length, limit):
    position = jnp.arange(length)[None, :]
    offset = position - origin[:, None]
    valid = (offset >= 0) & (offset < sizes[:, None]) & (position < limit)
    return resize_taps(offset, sizes, source, taps) + (valid,)

  y_terms = axis_terms(origin_y, canvas[0], image_hw[0])
  x_terms = axis_terms(origin_x, canvas[1], image_hw[1])
  if column_major:
    first_terms, second_terms = y_terms, x_terms
  else:
    windows = jnp.swapaxes(windows, 1, 2)
    first_terms, second_terms = x_terms, y_terms
  first = _interpolate_rows(windows, first_terms[0], first_terms[1])
  return jnp.swapaxes(first, 1, 2), second_terms, first_terms[2]


def _second_pass(first, second_terms, first_valid, threshold):
  """Second resizing pass, threshold and window/image clipping."""
  index, weight, valid = second_terms
  values = _interpolate_rows(first, index, weight)
  return (values > threshold) & valid[:, :, None] & first_valid[:, None, :]


# Three separate programs on purpose: fused into one, XLA recomputes the
# first pass (and the masks) for every output pixel (10x slower on CPU).
_first_pass_jit = jax.jit(_first_pass, static_argnames=(
    'canvas', 'taps', 'column_major'))
_second_pass_jit = jax.jit(_second_pass)
_boxes_jit = jax.jit(_boxes, static_argnames=('row_axis',))
_pack_jit = jax.jit(lambda masks: jnp.packbits(masks, axis=-1))


def paste_masks(logits, rows, sizes, origin_y, origin_x, image_hw,
                threshold, canvas, taps, column_major=False, with_boxes=True):
  """Binary masks of windows pasted on a canvas.

  Args:
    logits: [R, S, S] window mask logits (row-major pixels of the window).
    rows: [n] rows of `logits` to paste.
    sizes: [n] pasted side sz of each window, in image pixels.
    origin_y, origin_x: [n] image position of each window's pixel (0, 0).
    image_hw: [2] int, the image's height and width (<= canvas).
    threshold: mask logit threshold (strictly greater is foreground).
    canvas: (H, W) output canvas (static).
    taps: number of source pixels per output pixel (static).
    column_major: output [n, W, H] instead of [n, H, W] (static).
    with_boxes: also reduce the boxes (else None is returned for them).
  Returns:
    (masks bool [n, H, W] or [n, W, H], boxes [n, 4] float32 xywh), on the
    device.
  """
  first, second_terms, first_valid = _first_pass_jit(
      logits, rows, sizes, origin_y, origin_x, image_hw, canvas=canvas,
      taps=taps, column_major=column_major)
  masks = _second_pass_jit(first, second_terms, first_valid, threshold)
  if not with_boxes:
    return masks, None
  return masks, _boxes_jit(masks, row_axis=2 if column_major else 1)


class MaskPaster:
  """Pastes an image's windows in chunks, one compilation per canvas shape.

  Args:
    object_window: iSz (160).
    threshold: probability at which masks are cut (0.2).
    bucket_multiple: canvas sides are the image's rounded up to this.
    budget: masks x canvas pixels per call (bounds memory).
    max_masks: the most windows an image has (num_proposals).
    taps: source pixels per output pixel (`num_taps`).
  """

  def __init__(self, object_window: int, threshold: float,
               bucket_multiple: int, budget: int, max_masks: int, taps: int):
    self.object_window = object_window
    self.threshold = probability_logit(threshold)
    self.bucket_multiple = bucket_multiple
    self.budget = budget
    self.max_masks = max_masks
    self.taps = taps
    self.shapes = set()

  def chunk_size(self, canvas: tuple[int, int]) -> int:
    """Masks per call: a power of two within the budget."""
    fits = max(1, self.budget // (canvas[0] * canvas[1]))
    most = 1 << max(0, (self.max_masks - 1).bit_length())
    return min(1 << (fits.bit_length() - 1), most)

  def window_geometry(self, windows: WindowLogits, levels: Sequence[Level],
                      border: int):
    """(sizes, origin_y, origin_x) [K] int32 of each window in the image."""
    sizes = np.zeros(len(windows.probs), np.int32)
    origin_y = np.zeros_like(sizes)
    origin_x = np.zeros_like(sizes)
    for i, level in enumerate(levels):
      mine = windows.level == i
      sizes[mine] = pasted_size(level, self.object_window)
      origin_y[mine], origin_x[mine] = window_origins(
          level, windows.rows[mine], windows.cols[mine], border)
    return sizes, origin_y, origin_x

  def canvas(self, image_hw: tuple[int, int]) -> tuple[int, int]:
    """The bucketed (H_c, W_c) an image's masks are pasted on."""
    return (round_up(image_hw[0], self.bucket_multiple),
            round_up(image_hw[1], self.bucket_multiple))

  def _dispatcher(self, windows, levels, image_hw, border, column_major,
                  with_boxes, packed):
    """(dispatch(start) -> device (masks, boxes) of one chunk, chunk size)."""
    if packed and not column_major:
      raise ValueError('packed masks are column-major')
    canvas = self.canvas(image_hw)
    chunk = self.chunk_size(canvas)
    self.shapes.add((chunk, canvas, column_major, packed))
    geometry = self.window_geometry(windows, levels, border)
    count = len(windows.probs)
    hw = jnp.asarray(image_hw, jnp.int32)

    def dispatch(start):
      take = np.arange(start, start + chunk).clip(max=count - 1)
      args = [jnp.asarray(a[take]) for a in (windows.logits_row,) + geometry]
      masks, boxes = paste_masks(windows.logits, *args, hw, self.threshold,
                                 canvas=canvas, taps=self.taps,
                                 column_major=column_major,
                                 with_boxes=with_boxes)
      return (_pack_jit(masks) if packed else masks), boxes
    return dispatch, chunk

  def dispatch_packed(self, windows: WindowLogits, levels: Sequence[Level],
                      image_hw: tuple[int, int], border: int) -> list:
    """Starts pasting all of an image's windows; returns the device chunks.

    Each chunk is column-major masks, bit-packed along the last axis
    (`jnp.packbits`): uint8 [chunk, W_c, H_c / 8] on the bucketed canvas,
    still computing on return. A host copy moves 8x fewer bytes than bools.
    The last chunk repeats the last window as padding (cut by the reader).
    """
    dispatch, chunk = self._dispatcher(windows, levels, image_hw, border,
                                       True, False, True)
    return [dispatch(start)[0]
            for start in range(0, len(windows.probs), chunk)]

  def paste(self, windows: WindowLogits, levels: Sequence[Level],
            image_hw: tuple[int, int], border: int, column_major=False,
            with_boxes=True) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Yields (masks, boxes) on the host, chunk by chunk, best first.

    masks are bool [n, H, W] (or [n, W, H] with `column_major`), cut to the
    image; boxes [n, 4] float32 xywh (None without `with_boxes`). At most two
    chunks live on the device at once.
    """
    height, width = image_hw
    dispatch, chunk = self._dispatcher(windows, levels, image_hw, border,
                                       column_major, with_boxes, False)
    count = len(windows.probs)
    pending = dispatch(0) if count else None
    for start in range(0, count, chunk):
      current = pending
      if start + chunk < count:
        pending = dispatch(start + chunk)  # Overlaps the host copy below.
      masks, boxes = jax.device_get(current)
      n = min(chunk, count - start)
      cut = (slice(None, n), slice(None, width), slice(None, height)) if (
          column_major) else (slice(None, n), slice(None, height),
                              slice(None, width))
      yield masks[cut], None if boxes is None else boxes[:n]

  @property
  def compilations(self) -> int:
    return len(self.shapes)
