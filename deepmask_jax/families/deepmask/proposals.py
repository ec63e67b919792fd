"""Dense proposals: the jitted network per canvas bucket, top-k, mask decoding.

Per image, every pyramid level (deepmask_jax/families/deepmask/pyramid.py) runs the
trunk fully convolutionally on its canvas; canvases of one shape run as one
batch. Each call keeps the top-k windows of each canvas: their probabilities,
(row, col) positions and 512-d embeddings, plus for SharpMask the four
whole-map horizontal (skip) features. The levels' candidates are merged on the
host into the image's top-k, and the winning windows are decoded in chunks of
a fixed size: DeepMask's mask head on the embeddings (56 x 56 logits), or
SharpMask's refinement on the embeddings and the skip-feature windows
(160 x 160 logits). Every jitted function compiles once per input shape, and
the shapes are the canvas buckets, so a pass over a data set compiles a
bounded number of times (`ProposalNetwork.compilations`).
"""

import dataclasses
from typing import Optional, Sequence

import flax
import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.families.deepmask.patch_geometry import STRIDE
from deepmask_jax.families.deepmask.refinement import NUM_REFINEMENTS, SharpMask
from deepmask_jax.xla_options import network_jit

INVALID = -1.0  # Probability given to positions outside the valid score map.


def top_windows(score_logits: jax.Array, valid: jax.Array, k: int):
  """The k best positions of each score map, invalid positions excluded.

  Position (r, c) of a map W' positions wide has flat index r * W' + c, so a
  flat index i is row i // W', column i % W' (all 0-based). The reference's
  getTopScores converts the 1-based index i1 = i + 1 as row floor(i1 / W'),
  column i1 % W' + 1 (1-based, clamped to >= 1): the column is one too far
  right and the last column of a row wraps to the first column of the next
  row, so its masks and skip features came from a neighbouring window of the
  one that was scored. Fixed here.

  Args:
    score_logits: [B, H', W'] score logits.
    valid: [B, 2] int, the valid (rows, cols) of each map: positions with
      r >= rows or c >= cols exist only because of bucket padding.
    k: how many to keep (<= H' * W').
  Returns:
    (probs, rows, cols, flat): [B, k] each; probs are sigmoid scores, or
    INVALID where fewer than k valid positions exist; flat = r * W' + c.
  """
  batch, height, width = score_logits.shape
  r = jnp.arange(height)[None, :, None]
  c = jnp.arange(width)[None, None, :]
  inside = (r < valid[:, 0, None, None]) & (c < valid[:, 1, None, None])
  logits = jnp.where(inside, score_logits.astype(jnp.float32), -jnp.inf)
  best, flat = jax.lax.top_k(logits.reshape(batch, height * width), k)
  probs = jnp.where(jnp.isfinite(best), jax.nn.sigmoid(best), INVALID)
  return probs, flat // width, flat % width, flat


def merge_levels(level_probs: Sequence[np.ndarray], num: int):
  """The image's top `num` windows over all levels, best first.

  Equivalent to the reference's greedy merge of per-scale sorted lists (a tie
  goes to the earlier level, then to the better per-level rank).

  Args:
    level_probs: per level, [k_l] probabilities from `top_windows`, sorted
      descending, INVALID entries last.
    num: the number of proposals wanted.
  Returns:
    (probs, level, rank): [K] each, K = min(num, number of valid windows);
    `rank` indexes the level's top-k list.
  """
  probs = np.concatenate([np.asarray(p, np.float32) for p in level_probs])
  level = np.concatenate([np.full(len(p), i, np.int32)
                          for i, p in enumerate(level_probs)])
  rank = np.concatenate([np.arange(len(p), dtype=np.int32)
                         for p in level_probs])
  order = np.argsort(-probs, kind='stable')
  order = order[probs[order] >= 0.0][:num]
  return probs[order], level[order], rank[order]


def gather_windows(feature: jax.Array, slot: jax.Array, rows: jax.Array,
                   cols: jax.Array, size: int) -> jax.Array:
  """[N, size, size, C] windows of feature [B, H, W, C] at (slot, rows, cols)."""
  def one(b, r, c):
    start = (b, r, c, 0)
    return jax.lax.dynamic_slice(feature, start,
                                 (1, size, size, feature.shape[-1]))[0]
  return jax.vmap(one)(slot, rows, cols)


@flax.struct.dataclass
class LevelBatch:
  """Device outputs of one network call on a batch of same-shape canvases."""
  probs: jax.Array  # [B, k]
  rows: jax.Array  # [B, k]
  cols: jax.Array  # [B, k]
  embedding: jax.Array  # [B, k, E]
  horizontals: Optional[list]  # SharpMask: 4 maps [B, H_j, W_j, C_j].


@dataclasses.dataclass
class WindowLogits:
  """An image's chosen windows and their mask logits, best first.

  Attributes:
    probs: [K] probabilities (sigmoid scores).
    level: [K] index into the image's level list.
    rows, cols: [K] score-map positions at that level.
    logits: device [R, S, S] mask logits over the object window, R >= K.
    logits_row: [K] row of `logits` holding proposal i.
  """
  probs: np.ndarray
  level: np.ndarray
  rows: np.ndarray
  cols: np.ndarray
  logits: jax.Array
  logits_row: np.ndarray


class ProposalNetwork:
  """The jitted network pieces of DeepMask or SharpMask inference.

  Args:
    model: a DeepMask or SharpMask module.
    mean, std: per-channel RGB normalisation.
    num_proposals: K, windows kept per image.
    decode_chunk: windows per mask-decoding call.
    use_deepmask_masks: SharpMask only: use its DeepMask mask head instead
      of the refinement (the reference's `-dm`).
    batch_invariant: run the canvases of one call one by one inside the
      call (`lax.map`), so an image's results are bit for bit the same
      whichever images share its call (a real batch changes convolution
      results in the last bit on CPU); False batches them (more parallel
      work per kernel on accelerators).
  """

  def __init__(self, model, mean: Sequence[float], std: Sequence[float],
               num_proposals: int, decode_chunk: int,
               use_deepmask_masks: bool = False, batch_invariant: bool = True):
    self.model = model
    self.batch_invariant = batch_invariant
    self.deepmask = model.deepmask if isinstance(model, SharpMask) else model
    self.refine = isinstance(model, SharpMask) and not use_deepmask_masks
    self.mean = np.asarray(mean, np.float32)
    self.std = np.asarray(std, np.float32)
    self.num_proposals = num_proposals
    self.decode_chunk = decode_chunk
    self.feature_size = self.deepmask.feature_size
    self.mask_size = (self.deepmask.object_window if self.refine
                      else self.deepmask.mask_size)
    self._level_fn = network_jit(self._level, static_argnames=('k',))
    self._gather_fn = jax.jit(self._gather)
    self._decode_fn = network_jit(self._decode, donate_argnums=(1,))
    self._shapes = {'network': set(), 'gather': set(), 'decode': set()}

  # Jitted bodies. ---------------------------------------------------------

  def _forward(self, module, images):
    """Runs inside `model.apply`: score logits, embeddings, skip features."""
    deepmask = module.deepmask if isinstance(module, SharpMask) else module
    features, embedding = deepmask.encode(images, crop=False)
    scores = deepmask.score_logits(embedding)
    horizontals = None
    if self.refine:
      horizontals = module.refinement.horizontal(features, crop=False)
    return scores, embedding, horizontals

  def _network(self, variables, canvases):
    images = (canvases - self.mean) / self.std
    return self.model.apply(variables, images, method=self._forward)

  def _level(self, variables, canvases, valid, k):
    if self.batch_invariant and canvases.shape[0] > 1:
      one = lambda canvas: jax.tree.map(
          lambda x: x[0], self._network(variables, canvas[None]))
      scores, embedding, horizontals = jax.lax.map(one, canvases)
    else:
      scores, embedding, horizontals = self._network(variables, canvases)
    probs, rows, cols, flat = top_windows(scores, valid, k)
    batch = embedding.shape[0]
    embedding = jnp.take_along_axis(
        embedding.reshape(batch, -1, embedding.shape[-1]), flat[..., None],
        axis=1)
    return LevelBatch(probs, rows, cols, embedding, horizontals)

  def _decode_windows(self, module, embedding, windows):
    if windows is None:
      deepmask = module.deepmask if isinstance(module, SharpMask) else module
      return deepmask.mask_logits(embedding)
    return module.refine(embedding, windows)

  def _gather(self, level, slot, rank):
    """Embeddings [C, E] (and SharpMask skip windows) of (slot, rank)."""
    embedding = level.embedding[slot, rank]
    if not self.refine:
      return embedding, None
    rows, cols = level.rows[slot, rank], level.cols[slot, rank]
    # Skip map j has stride 16 / 2^j: the window at position (r, c) starts
    # at (r * 2^j, c * 2^j) and spans fSz * 2^j cells (reference
    # getTopPatches, 0-based).
    return embedding, [
        gather_windows(h, slot, rows * 2 ** j, cols * 2 ** j,
                       self.feature_size * 2 ** j)
        for j, h in enumerate(level.horizontals[:NUM_REFINEMENTS])]

  def _decode(self, variables, buffer, embedding, windows, start):
    """Writes the mask logits of C gathered windows into buffer[start:]."""
    logits = self.model.apply(variables, embedding, windows,
                              method=self._decode_windows)
    return jax.lax.dynamic_update_slice(
        buffer, logits.astype(buffer.dtype), (start, 0, 0))

  # Host orchestration. ----------------------------------------------------

  def run_levels(self, variables, canvases: np.ndarray,
                 valid: np.ndarray) -> LevelBatch:
    """One network call on canvases [B, H, W, 3] with valid [B, 2]."""
    height, width = canvases.shape[1:3]
    positions = ((height // STRIDE - self.feature_size + 1)
                 * (width // STRIDE - self.feature_size + 1))
    k = min(self.num_proposals, positions)
    self._shapes['network'].add((canvases.shape, k))
    return self._level_fn(variables, jnp.asarray(canvases),
                          jnp.asarray(valid, jnp.int32), k=k)

  def decode(self, variables, batches: Sequence[LevelBatch],
             selections: Sequence[tuple[int, int, np.ndarray]]) -> jax.Array:
    """Mask logits of an image's chosen windows.

    Args:
      variables: model variables.
      batches: the LevelBatches the image's windows come from.
      selections: (batch index, slot, ranks [n_l]) per level of the image;
        the windows are decoded in this order into consecutive rows.
    Returns:
      Logits [num_proposals + chunk, S, S] on the device. Chunks are written
      in order, and a short last chunk of a level writes padding into rows
      that the next selection then overwrites.
    """
    chunk = self.decode_chunk
    size = self.mask_size
    buffer = jnp.zeros((self.num_proposals + chunk, size, size), jnp.float32)
    start = 0
    for batch_index, slot, ranks in selections:
      level = batches[batch_index]
      self._shapes['gather'].add(
          tuple(np.shape(leaf) for leaf in jax.tree.leaves(level)))
      for offset in range(0, len(ranks), chunk):
        part = ranks[offset:offset + chunk]
        part = np.concatenate([part, np.full(chunk - len(part), part[-1])])
        embedding, windows = self._gather_fn(
            level, np.full(chunk, slot, np.int32), part.astype(np.int32))
        self._shapes['decode'].add(buffer.shape)
        buffer = self._decode_fn(variables, buffer, embedding, windows,
                                 np.int32(start + offset))
      start += len(ranks)
    return buffer

  @property
  def compilations(self) -> dict[str, int]:
    """Distinct input shapes seen per jitted function (one compile each)."""
    return {name: len(shapes) for name, shapes in self._shapes.items()}


def fetch_rankings(batches: Sequence[LevelBatch]) -> list[tuple]:
  """Host copies of each batch's (probs, rows, cols), fetched together."""
  return jax.device_get([(b.probs, b.rows, b.cols) for b in batches])
