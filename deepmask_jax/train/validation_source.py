"""`ValidationSource`: what a family validates on during training.

Every family's `validation_source(config)` returns one, the trainer's
`eval_source` replaces it (tests: a tiny split, in-memory batches), and the
family's validator and its TensorBoard drawings read it. One type for every
family, so whoever builds a replacement needs no family's private type.
"""

import dataclasses
import os
from typing import Callable, Iterable, Optional


@dataclasses.dataclass(frozen=True)
class ValidationSource:
  """The validation split a training run checks its model on.

  Attributes:
    json_path: the COCO json of the validation images (images, objects,
      categories).
    image_dir: the folder of those images.
    num_images: what a validation pass reads (config.validation_images), in
      the family's samples: images, or patches for the patch families
      (whole batches of them).
    batches: for families that validate on batches (DeepMask, SharpMask): ()
      -> the same fixed stream of global batch dicts at every call; None for
      families that validate on the images themselves (EmbedMask).
  """
  json_path: str
  image_dir: str
  num_images: int
  batches: Optional[Callable[[], Iterable[dict]]] = None

  @classmethod
  def from_config(cls, config, batches=None) -> 'ValidationSource':
    """config.validation_images of config.data's validation split."""
    data = config.data
    return cls(os.path.join(data.root, data.val_json),
               os.path.join(data.root, data.val_images),
               int(config.validation_images), batches)
