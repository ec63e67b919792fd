"""A toy family for tests/families/test_toy_family.py: one 3x3 conv that
predicts a foreground mask, trained, checkpointed, evaluated and run through
the shared machinery (the recipe of docs/adding_a_family.md)."""

import os

import jax
import jax.numpy as jnp
import numpy as np
import optax
from pycocotools import mask as mask_utils

from deepmask_jax.evaluation.ground_truth import load_ground_truth
from deepmask_jax.evaluation.per_image import evaluate_per_image
from deepmask_jax.families.base import Family
from deepmask_jax.inference.images import EncodedProposals, as_rgb
from deepmask_jax.models.convolution import Conv
from deepmask_jax.train.initialization import fresh_variables
from deepmask_jax.train.optimizer import Optimization
from deepmask_jax.train.validation_source import ValidationSource
from tests.conftest import tiny_config
from tests.evaluation.conftest import write_tiny_split

SIDE = 16  # Training images: SIDE x SIDE, a bright square on a dark one.


def toy_batch(config, step: int) -> dict:
  """{'image' [B, SIDE, SIDE, 3], 'mask' [B, SIDE, SIDE] in {0, 1}}."""
  rng = np.random.default_rng([config.seed, step])
  images = rng.uniform(0, 0.2, (config.batch_size, SIDE, SIDE, 3))
  masks = np.zeros((config.batch_size, SIDE, SIDE), np.float32)
  for image, mask in zip(images, masks):
    y, x = rng.integers(0, SIDE // 2, 2)
    image[y:y + SIDE // 2, x:x + SIDE // 2] += 0.8
    mask[y:y + SIDE // 2, x:x + SIDE // 2] = 1
  return {'image': images.astype(np.float32), 'mask': masks}


def toy_config(root, model: str = 'toy'):
  """Two steps of batch 8, validated and checkpointed at step 2, on a tiny
  validation split written to `root`."""
  write_tiny_split(root, [(1, 'a'), (2, 'b')])
  return tiny_config(**{
      'model': model, 'batch_size': 8, 'schedule.total_steps': 2,
      'eval_every_steps': 2,
      'checkpoint_every_steps': 2, 'log_every_steps': 1,
      'data.root': str(root), 'data.val_json': 'val.json',
      'data.val_images': 'images'})



class ToyPredictor:
  """The Predictor (inference/predictor.py): one mask per image."""

  categories = ({'id': 1, 'name': 'object'},)
  class_aware = False

  def __init__(self, model, variables):
    self.variables = variables
    self._apply = jax.jit(model.apply)

  def propose_encoded(self, images):
    results = []
    for image in images:
      pixels = jnp.asarray(as_rgb(image)[None] / 255.0, jnp.float32)
      probs = np.asarray(jax.nn.sigmoid(self._apply(self.variables, pixels)))[0]
      rles = [mask_utils.encode(np.asfortranarray(probs > 0.5, np.uint8))]
      results.append(EncodedProposals(rles, mask_utils.toBbox(rles),
                                      np.float32([probs.max()]),
                                      *probs.shape))
    return results

  def stream(self, images):
    for image in images:
      yield self.propose_encoded([image])[0]

  @property
  def compilations(self) -> dict:
    return {'network': self._apply._cache_size()}  # pylint: disable=protected-access


class ToyModel(Conv):
  """[B, H, W, 3] -> mask logits [B, H, W]."""

  def __call__(self, x):
    return super().__call__(x)[..., 0]


class ToyFamily(Family):
  name = 'toy'

  def build_model(self, config):
    return ToyModel(features=1, kernel=3, padding=1)

  def init_variables(self, config, model):
    variables = fresh_variables(model, config.seed, (1, SIDE, SIDE, 3))
    return {'params': variables['params'], 'constants': {}}

  def train_batches(self, config, *, start_step=0):
    return (toy_batch(config, step) for step in range(start_step + 1, 10**9))

  def validation_source(self, config):
    # Batches of step 0 (training uses steps 1, 2, ...); images of config.data.
    return ValidationSource.from_config(
        config, batches=lambda: [toy_batch(config, 0)])

  def batch_keys(self, config):
    return {'mask': ('image', 'mask')}

  def head_of(self, batch):
    return 'mask'

  def loss_fn(self, config, model, head):
    def loss(params, constants, batch, rng):
      logits = model.apply({'params': params, 'constants': constants},
                           batch['image'])
      value = optax.sigmoid_binary_cross_entropy(logits, batch['mask']).mean()
      return value, {'loss': value}
    return loss

  def optimization(self, config, params):
    return Optimization(groups={'all': ('kernel', 'bias')}, heads={'mask': ('all',)},
                        transform=optax.sgd(1.0),
                        learning_rate=lambda step: 0.1)

  def validator(self, config, model, source, shard):
    def validate(variables):
      losses = [self.loss_fn(config, model, 'mask')(
          variables['params'], variables['constants'],
          shard(batch) if shard else batch, None)[0]
                for batch in source.batches()]
      return {'loss': float(np.mean(losses))}
    return validate

  def rank(self, figures):
    return (-figures['loss'],)

  def evaluate(self, config, model, variables, out_dir):
    data = config.data
    return evaluate_per_image(
        self.predictor(config, model, variables),
        load_ground_truth(os.path.join(data.root, data.val_json),
                          os.path.join(data.root, data.val_images)),
        out_dir, verbose=False)

  def predictor(self, config, model, variables, **overrides):
    return ToyPredictor(model, variables)
