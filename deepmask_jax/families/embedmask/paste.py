"""EmbedMask masks and boxes at the original image size.

As the reference's prepare_for_coco_segmentation: each stride-4 mask
log-probability map [h4, w4] of an image resized to (h_in, w_in) (its valid
part of the canvas) is bilinearly resized to
  ceil(h4 * 4 * H0 / h_in) x ceil(w4 * 4 * W0 / w_in)
(F.interpolate(mode='bilinear', align_corners=False): half-pixel centres,
source positions clamped at 0, no antialiasing), thresholded at
> ln(mask_threshold) and cropped to the original H0 x W0.

On the device, masks go in chunks of a fixed count at canvas sides rounded up
to `bucket` pixels (rows and columns past H0, W0 are cut on the host), so
images of many sizes share few compiled programs. The device writes each
chunk column-major ([n, W, H]); the host returns [N, H0, W0] views of it, so
each mask is in the Fortran order pycocotools' RLE encoder reads.
"""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.families.embedmask.postprocess import MASK_STRIDE

MASK_THRESHOLD = 0.53  # Probability (the reference's MASK_TH, in log space).


def pasted_side(mask_size: int, input_size: int, original_size: int) -> int:
  """ceil(mask_size * 4 * original / input), in float32 as the reference."""
  size = (np.float32(mask_size) * np.float32(MASK_STRIDE)
          * np.float32(original_size) / np.float32(input_size))
  return int(np.ceil(size))


def _bilinear_taps(out_size, in_size: int, length: int):
  """Half-pixel bilinear taps of output positions 0..length-1.

  out_size: traced int, the full output size; in_size: static input size.
  Returns (low, high) int32 [length] source indices and (w_low, w_high)
  float32 [length] weights, as PyTorch's upsample_bilinear2d computes them.
  """
  scale = jnp.float32(in_size) / out_size.astype(jnp.float32)
  source = jnp.maximum(
      (jnp.arange(length, dtype=jnp.float32) + 0.5) * scale - 0.5, 0.0)
  low = jnp.minimum(source.astype(jnp.int32), in_size - 1)
  high = jnp.minimum(low + 1, in_size - 1)
  w_high = source - low.astype(jnp.float32)
  return low, high, 1.0 - w_high, w_high


@functools.partial(jax.jit, static_argnames=('rows', 'cols'))
def _paste_chunk(logprob, out_hw, crop_hw, log_threshold, rows: int,
                 cols: int):
  """[n, h4, w4] log-probabilities -> bool [n, cols, rows] (column-major).

  out_hw: int32 [2], the reference's resized size; crop_hw: int32 [2], the
  original size (cells past it are False).
  """
  _, height, width = logprob.shape
  y_low, y_high, wy_low, wy_high = _bilinear_taps(out_hw[0], height, rows)
  x_low, x_high, wx_low, wx_high = _bilinear_taps(out_hw[1], width, cols)
  # Columns first, then rows: PyTorch's order of the two lerps.
  across = (logprob[:, :, x_low] * wx_low + logprob[:, :, x_high] * wx_high)
  across = jnp.swapaxes(across, 1, 2)  # [n, cols, h4].
  value = (across[:, :, y_low] * wy_low + across[:, :, y_high] * wy_high)
  inside = ((jnp.arange(cols) < crop_hw[1])[:, None]
            & (jnp.arange(rows) < crop_hw[0])[None, :])
  return (value > log_threshold) & inside[None]


class LogProbPaster:
  """Pastes mask log-probability maps at original image sizes.

  Compiled programs are keyed by (chunk, h4, w4, bucketed H0, bucketed W0);
  `compilations` counts them.
  """

  def __init__(self, threshold: float = MASK_THRESHOLD, bucket: int = 64,
               chunk: int = 25):
    self.log_threshold = math.log(threshold)
    self.bucket = bucket
    self.chunk = chunk
    self.shapes = set()

  @property
  def compilations(self) -> int:
    return len(self.shapes)

  def __call__(self, mask_logprob, input_hw, original_hw) -> np.ndarray:
    """bool [N, H0, W0] masks of [N, h4, w4] maps (numpy or device arrays).

    input_hw: (h_in, w_in) valid size of the resized image in the canvas;
    original_hw: (H0, W0) size of the image before resizing.
    """
    num, height, width = mask_logprob.shape
    out_hw = (pasted_side(height, input_hw[0], original_hw[0]),
              pasted_side(width, input_hw[1], original_hw[1]))
    if out_hw[0] < original_hw[0] or out_hw[1] < original_hw[1]:
      raise ValueError(f'masks of {height}x{width} cells resize to '
                       f'{out_hw}, smaller than the original {original_hw}: '
                       f'is the valid size {input_hw} inside the canvas?')
    rows = -(-original_hw[0] // self.bucket) * self.bucket
    cols = -(-original_hw[1] // self.bucket) * self.bucket
    masks = np.zeros((num, original_hw[1], original_hw[0]), bool)
    self.shapes.add((self.chunk, height, width, rows, cols))
    logprob = jnp.asarray(mask_logprob, jnp.float32)
    pending = []
    for start in range(0, num, self.chunk):
      part = logprob[start:start + self.chunk]
      part = jnp.pad(part, ((0, self.chunk - len(part)), (0, 0), (0, 0)))
      pending.append((start, _paste_chunk(
          part, jnp.asarray(out_hw, jnp.int32),
          jnp.asarray(original_hw, jnp.int32),
          jnp.float32(self.log_threshold), rows=rows, cols=cols)))
    for start, chunk in pending:  # Dispatch all chunks before reading any.
      stop = min(start + self.chunk, num)
      masks[start:stop] = np.asarray(chunk)[:stop - start, :original_hw[1],
                                            :original_hw[0]]
    return masks.transpose(0, 2, 1)


_DEFAULT_PASTER = LogProbPaster()


def paste_masks(mask_logprob, input_hw, original_hw,
                threshold: float = MASK_THRESHOLD) -> np.ndarray:
  """bool [N, H0, W0] masks at the original size (see LogProbPaster)."""
  if threshold == MASK_THRESHOLD:
    return _DEFAULT_PASTER(mask_logprob, input_hw, original_hw)
  return LogProbPaster(threshold)(mask_logprob, input_hw, original_hw)


def rescale_boxes(boxes, input_hw, original_hw) -> np.ndarray:
  """[N, 4] xyxy input pixels -> original pixels, as BoxList.resize."""
  ratio_h = float(original_hw[0]) / float(input_hw[0])
  ratio_w = float(original_hw[1]) / float(input_hw[1])
  scale = np.array([ratio_w, ratio_h, ratio_w, ratio_h], np.float32)
  return np.asarray(boxes, np.float32).reshape(-1, 4) * scale


def xyxy_to_xywh(boxes) -> np.ndarray:
  """[N, 4] xyxy -> xywh with maskrcnn-benchmark's +1 width and height."""
  boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
  return np.concatenate([boxes[:, :2], boxes[:, 2:] - boxes[:, :2] + 1], 1)
