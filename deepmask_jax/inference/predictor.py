"""`Predictor`: what the image CLI, the evaluators, the viewer and the
TensorBoard drawings use of a family's inference object, and nothing more.

Family.predictor(config, model, variables, **overrides) returns one
(DeepMask/SharpMask: families/deepmask/generator.ProposalGenerator;
EmbedMask: families/embedmask/segmenter.InstanceSegmenter). Images are
[H, W, 3] uint8 RGB (`inference.images.as_rgb` kinds).
"""

from typing import Any, Iterable, Iterator, Protocol, Sequence, runtime_checkable

import numpy as np

from deepmask_jax.inference.images import EncodedProposals


@runtime_checkable
class Predictor(Protocol):
  """Inference of one trained model on whole images."""

  # Labels it predicts, {'id', 'name'} each; one ('object') when class-agnostic.
  categories: Sequence[dict]
  class_aware: bool  # Whether its results carry category ids.
  # The model variables on the device; replaced in place by validation, so
  # that compiled programs are kept across checkpoints.
  variables: Any

  def propose_encoded(self, images: Sequence[np.ndarray]
                      ) -> list[EncodedProposals]:
    """Results per image, best first (each image start to finish)."""

  def stream(self, images: Iterable[np.ndarray]
             ) -> Iterator[EncodedProposals]:
    """`propose_encoded` of each image, in order, as soon as it is ready."""

  @property
  def compilations(self) -> dict:
    """Programs compiled so far, per jitted function (shape counts)."""
