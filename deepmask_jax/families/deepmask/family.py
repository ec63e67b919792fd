"""DeepMask and SharpMask: patch training, per-patch validation, dense proposals.

DeepMask alternates mask and score batches of patches (the reference's
hfreq), each updating the trunk and one head; checkpoints rank by the share of
validation patches with IoU >= 0.7, then the mean IoU (the reference's
bestmodel.t7). SharpMask (stage 2) trains only its refinement on mask batches
over a frozen DeepMask whose architecture it inherits.
"""

import os

import jax
import ml_collections
import numpy as np

from deepmask_jax.errors import InputError
from deepmask_jax.evaluation.ground_truth import (coverage_line,
                                                  load_ground_truth,
                                                  skipped_line)
from deepmask_jax.evaluation.per_image import evaluate_per_image
from deepmask_jax.evaluation.per_patch import PerPatchEvaluator, split_coverage
from deepmask_jax.families.base import Family
from deepmask_jax.families.deepmask.generator import ProposalGenerator
from deepmask_jax.families.deepmask.model import deepmask_from_config
from deepmask_jax.families.deepmask.patch_geometry import patch_side
from deepmask_jax.families.deepmask.refinement import SharpMask
from deepmask_jax.models.store import load_model
from deepmask_jax.families.deepmask import losses
from deepmask_jax.train.initialization import (fresh_variables,
                                               replace_subtree,
                                               with_pretrained_trunk)
from deepmask_jax.train.optimizer import (Optimization, step_schedule,
                                          sgd_or_adam)
from deepmask_jax.train.validation_source import ValidationSource

# DeepMask config fields a SharpMask inherits from its DeepMask checkpoint.
INHERITED_FIELDS = ('trunk', 'head')
INHERITED_PATCH_FIELDS = ('object_window', 'context', 'mask_size')


def process_slice(batch: dict) -> dict:
  """This process's share of a global (evaluation) batch."""
  n, i = jax.process_count(), jax.process_index()
  return {k: (v[i * (len(v) // n):(i + 1) * (len(v) // n)]
              if np.ndim(v) else v) for k, v in batch.items()}


class DeepMaskFamily(Family):
  """DeepMask: trunk + mask head + score head on 192-px patches."""

  name = 'deepmask'
  validation_name = 'val_per_patch'
  sample_name = 'patches'
  # dtype: a model trained in either precision may be evaluated in the other.
  eval_overrides = Family.eval_overrides + ('patch.flip', 'dtype')

  def build_model(self, config):
    return deepmask_from_config(config)

  def init_variables(self, config, model) -> dict:
    side = patch_side(config)
    variables = fresh_variables(model, config.seed, (1, side, side, 3))
    return with_pretrained_trunk(variables, config)

  def train_batches(self, config, *, start_step=0):
    from deepmask_jax.families.deepmask import input_pipeline  # TensorFlow lives there.
    return input_pipeline.train_batches(config, start_step=start_step)

  def validation_source(self, config) -> ValidationSource:
    from deepmask_jax.families.deepmask import input_pipeline  # TensorFlow lives there.
    return ValidationSource.from_config(
        config, batches=lambda: input_pipeline.eval_batches(config))

  def batch_keys(self, config) -> dict:
    return {'mask': ('image', 'mask'), 'score': ('image', 'score')}

  def head_of(self, batch: dict) -> str:
    return 'mask' if bool(batch['is_mask']) else 'score'

  def loss_fn(self, config, model, head: str):
    global_batch = config.batch_size

    def loss(params, constants, batch, rng):
      out = model.apply({'params': params, 'constants': constants},
                        batch['image'], train=True, rngs={'dropout': rng})
      if head == 'mask':
        objective = losses.mask_loss(out['mask'], batch['mask'], global_batch)
        # Report the mask objective per sample, comparable across batches.
        return objective, {'loss': objective / global_batch}
      objective = losses.score_loss(out['score'], batch['score'])
      return objective, {'loss': objective}
    return loss

  def optimization(self, config, params: dict) -> Optimization:
    return Optimization(
        groups={'trunk': ('trunk', 'reduce', 'embed'),
                'mask': ('mask_head',),
                'score': ('score_hidden_layer', 'score_out')},
        heads={'mask': ('trunk', 'mask'), 'score': ('trunk', 'score')},
        transform=sgd_or_adam(config),
        learning_rate=step_schedule(config.schedule, config.batch_size))

  def validator(self, config, model, source, shard):
    evaluator = PerPatchEvaluator(model, shard=shard)
    return lambda variables: evaluator.run(
        variables, map(process_slice, source.batches()))

  def rank(self, figures: dict) -> tuple:
    return (figures['iou_0.7'], figures.get('mean', 0.0))

  def evaluate(self, config, model, variables, out_dir: str) -> dict:
    from deepmask_jax.data.synthetic import ensure_synthetic  # No TF.
    ensure_synthetic(config.data)
    root = config.data.root
    # The val json is checked before any image or patch is evaluated.
    ground_truth = load_ground_truth(
        os.path.join(root, config.data.val_json),
        os.path.join(root, config.data.val_images))
    results = {}
    if config.evaluation.per_patch:
      from deepmask_jax.data import tfds_coco
      from deepmask_jax.families.deepmask import input_pipeline  # TensorFlow.
      built = input_pipeline.load_object_index(
          tfds_coco.prepare(config.data), 'val').image_id
      figures = PerPatchEvaluator(model).run(
          variables, input_pipeline.eval_batches(
              config, process_index=jax.process_index(),
              process_count=jax.process_count()))
      print('per patch:', ' '.join(f'{k}={v:.4g}' for k, v in figures.items()),
            flush=True)
      figures.update(split_coverage(ground_truth, built))
      print(f'per patch: {coverage_line(figures)}', flush=True)
      if skipped := skipped_line(figures):
        print(f'per patch: {skipped}', flush=True)
      results['per_patch'] = figures
    if config.evaluation.per_image:
      results['per_image'] = evaluate_per_image(
          self.predictor(config, model, variables,
                         results_per_image=config.evaluation.results_per_image),
          ground_truth, out_dir,
          max_images=config.evaluation.max_images or None)
    return results

  def predictor(self, config, model, variables, **overrides):
    return ProposalGenerator(model, variables, config, **overrides)


class SharpMaskFamily(DeepMaskFamily):
  """SharpMask stage 2: a refinement trained over a frozen DeepMask."""

  name = 'sharpmask'

  def resolve_config(self, config):
    """Copies the architecture fields of the DeepMask checkpoint it refines."""
    if not config.deepmask_checkpoint:
      raise InputError('SharpMask trains on top of a trained DeepMask: set '
                       '--config.deepmask_checkpoint=<DeepMask workdir or '
                       'model dir>')
    _, deepmask_config = load_model(config.deepmask_checkpoint)
    config = ml_collections.ConfigDict(config.to_dict())
    for field in INHERITED_FIELDS:
      config[field] = deepmask_config[field]
    for field in INHERITED_PATCH_FIELDS:
      config.patch[field] = deepmask_config.patch[field]
    return config

  def build_model(self, config):
    return SharpMask(deepmask_from_config(config), km=config.refine.km)

  def init_variables(self, config, model) -> dict:
    side = patch_side(config)
    variables = fresh_variables(model, config.seed, (1, side, side, 3))
    deepmask_vars, _ = load_model(config.deepmask_checkpoint)
    return replace_subtree(variables, 'deepmask', deepmask_vars,
                           config.deepmask_checkpoint)

  def batch_keys(self, config) -> dict:
    return {'mask': ('image', 'mask')}

  def head_of(self, batch: dict) -> str:
    if not bool(batch['is_mask']):
      raise InputError('SharpMask trains on mask batches only; set '
                       'config.patch.hfreq = 0')
    return 'mask'

  def optimization(self, config, params: dict) -> Optimization:
    return Optimization(
        groups={'refinement': ('refinement',)},
        heads={'mask': ('refinement',)},
        transform=sgd_or_adam(config),
        learning_rate=step_schedule(config.schedule, config.batch_size))
