"""The interface a model family supplies to the shared trainer, evaluator and CLIs.

A family (DeepMask, SharpMask, EmbedMask) owns everything that differs
between models: how the model is built and initialised, its batches, its
per-device losses and optimisation, how it is validated during training and
evaluated afterwards, which figure ranks its checkpoints, and its inference.
The trainer (deepmask_jax/train/trainer.py), the data-parallel wrapper,
checkpointing, `main`, checkpoint evaluation (deepmask_jax/evaluate.py) and
the image CLI (deepmask_jax/propose.py) call only these methods, through
a family bound to its resolved config (families.bind, families/bound.py).
Every method here takes the config first, then the model, then what it works
on: pure functions of the config, which the bound family fills in.

Families sit at the top of the import graph (they use train/, evaluation/
and inference/); the layers below never import them. TensorFlow is imported
only inside the batch-source methods.
"""

import abc
from typing import Callable, Iterator, Optional

from deepmask_jax.evaluation.prediction_images import DRAWN as PREDICTIONS_DRAWN
from deepmask_jax.evaluation.prediction_images import prediction_images
from deepmask_jax.inference.predictor import Predictor
from deepmask_jax.train.validation_source import ValidationSource

# variables -> flat dict of scalar figures (a validation pass).
Validator = Callable[[dict], dict]
# Global batch dict -> the device arrays a validation pass reads (sharded over
# the training mesh), or None: evaluate on the default device, unsharded.
Shard = Optional[Callable[[dict], dict]]


class Family(abc.ABC):
  """One model family. Subclasses set `name` and `validation_name`."""

  name: str = ''
  validation_name: str = 'val'  # Prefix of the validation figures in logs.
  sample_name: str = 'images'  # What a training batch holds (for images/s).
  # Dotted config fields that `--config.mode=eval` takes from the command
  # line rather than from the checkpoint's own config.
  eval_overrides: tuple = ('data', 'evaluation', 'validation_images', 'seed')

  def resolve_config(self, config):
    """The config training really uses (e.g. fields inherited from a parent model)."""
    return config

  @abc.abstractmethod
  def build_model(self, config):
    """The Flax module the config describes."""

  @abc.abstractmethod
  def init_variables(self, config, model) -> dict:
    """{'params', 'constants'} to start training from (pretrained parts filled)."""

  @abc.abstractmethod
  def train_batches(self, config, *, start_step: int = 0) -> Iterator[dict]:
    """Endless training batches from `start_step`; batch t depends on (seed, t) only."""

  @abc.abstractmethod
  def validation_source(self, config) -> ValidationSource:
    """What the validator reads during training (a fixed split or stream)."""

  @abc.abstractmethod
  def batch_keys(self, config) -> dict:
    """{head: the batch arrays a step of that head sends to the devices}."""

  @abc.abstractmethod
  def head_of(self, batch: dict) -> str:
    """Which head (kind of batch) a training batch is."""

  @abc.abstractmethod
  def loss_fn(self, config, model, head: str) -> Callable:
    """(params, constants, batch, rng) -> (objective, metrics) on one device.

    The objective's mean over devices is the global objective (collectives
    over train_step.AXIS are allowed); metrics are scalars incl. 'loss'.
    """

  @abc.abstractmethod
  def optimization(self, config, params: dict):
    """A train.optimizer.Optimization: groups, heads, direction, schedule."""

  def total_steps(self, config) -> int:
    """Training steps of the whole schedule (config.schedule, shared by
    every family)."""
    return int(config.schedule.total_steps)

  @abc.abstractmethod
  def validator(self, config, model, source: ValidationSource,
                shard: Shard) -> Validator:
    """variables -> flat dict of scalar figures on `source` (the family's
    validation_source or the trainer's replacement); batches go to the
    devices through `shard` (DataParallel.evaluation_shard)."""

  def prediction_images(self, config, model,
                        source: ValidationSource) -> Callable | None:
    """variables -> {name: [H, W, 3] uint8}: the family's predictions drawn
    over the first `config.tensorboard_images` images of `source`, written
    to TensorBoard at each validation; None draws nothing (0, or no images)."""
    return prediction_images(
        config.get('tensorboard_images', 0), source.json_path, source.image_dir,
        lambda variables: self.predictor(config, model, variables,
                                         results_per_image=PREDICTIONS_DRAWN))

  @abc.abstractmethod
  def rank(self, figures: dict) -> tuple:
    """Orders validated checkpoints (higher is better) for the 'best' slot."""

  @abc.abstractmethod
  def evaluate(self, config, model, variables, out_dir: str) -> dict:
    """`--config.mode=eval`: the standard figures of a trained model."""

  @abc.abstractmethod
  def predictor(self, config, model, variables, **overrides) -> Predictor:
    """Inference on images (inference/predictor.py); `overrides` change
    inference settings, e.g. results_per_image."""
