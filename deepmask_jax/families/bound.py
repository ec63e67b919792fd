"""`BoundFamily`: a family bound to its resolved config, as callers use it.

    family = families.bind(config)  # Resolves the config, once.
    model = family.build_model()
    loss = family.loss_fn(model, 'mask')

A family's own methods (base.Family) take the config first, pure functions
that are easy to test; the shared callers (trainer, `main`, checkpoint
evaluation, the image CLI, the viewer) hold this object instead, so that
they never pass a config again and every method sees the same resolved one.
"""

from typing import Callable, Iterator

from deepmask_jax.families.base import Family, Shard, Validator
from deepmask_jax.inference.predictor import Predictor
from deepmask_jax.train.validation_source import ValidationSource


def _family_attribute(name: str) -> property:
  """The bound family's class attribute `name` (read-only)."""
  return property(lambda self: getattr(self.family, name))


class BoundFamily:
  """`family`'s methods with `config` filled in (see base.Family for each).

  Args:
    family: the Family.
    config: its config as resolved (Family.resolve_config) already: built by
      families.bind, or saved with a trained model.
  """

  def __init__(self, family: Family, config):
    self.family = family
    self.config = config

  name = _family_attribute('name')
  validation_name = _family_attribute('validation_name')
  sample_name = _family_attribute('sample_name')
  eval_overrides = _family_attribute('eval_overrides')

  def build_model(self):
    return self.family.build_model(self.config)

  def init_variables(self, model) -> dict:
    return self.family.init_variables(self.config, model)

  def train_batches(self, *, start_step: int = 0) -> Iterator[dict]:
    return self.family.train_batches(self.config, start_step=start_step)

  def validation_source(self) -> ValidationSource:
    return self.family.validation_source(self.config)

  def batch_keys(self) -> dict:
    return self.family.batch_keys(self.config)

  def head_of(self, batch: dict) -> str:
    return self.family.head_of(batch)

  def loss_fn(self, model, head: str) -> Callable:
    return self.family.loss_fn(self.config, model, head)

  def optimization(self, params: dict):
    return self.family.optimization(self.config, params)

  def total_steps(self) -> int:
    return self.family.total_steps(self.config)

  def validator(self, model, source: ValidationSource,
                shard: Shard) -> Validator:
    return self.family.validator(self.config, model, source, shard)

  def prediction_images(self, model,
                        source: ValidationSource) -> Callable | None:
    return self.family.prediction_images(self.config, model, source)

  def rank(self, figures: dict) -> tuple:
    return self.family.rank(figures)

  def evaluate(self, model, variables, out_dir: str) -> dict:
    return self.family.evaluate(self.config, model, variables, out_dir)

  def predictor(self, model, variables, **overrides) -> Predictor:
    return self.family.predictor(self.config, model, variables, **overrides)
