"""EmbedMask: one-stage instance segmentation on full images (FCOS + embeddings).

Training batches are whole images padded into two canvases
(families/embedmask/pipeline.py); the per-device loss computes FCOS targets on
the device and adds the V3 mask loss (families/embedmask/losses.py). The solver
is maskrcnn-benchmark's: SGD with momentum, biases at twice the rate without
weight decay, constant warmup, step decays; the stem and layer1 stay frozen
(FREEZE_CONV_BODY_AT = 2). Validation runs the full inference on the first
`config.validation_images` validation images and checkpoints rank by mask AP, then
box AP. `--config.mode=eval` reports COCO segm and bbox AP with categories and
the class-agnostic AR of the DeepMask harness.
"""

import os
import tempfile

from flax import traverse_util
import jax
import ml_collections

from deepmask_jax.errors import DataError, InputError
from deepmask_jax.evaluation.categories import check_categories
from deepmask_jax.evaluation.ground_truth import load_ground_truth
from deepmask_jax.evaluation.per_image import evaluate_per_image
from deepmask_jax.families.base import Family
from deepmask_jax.families.embedmask.segmenter import (InstanceSegmenter,
                                                  categories_of)
from deepmask_jax.families.embedmask.model import (embedmask_from_config,
                                           frozen_trunk_paths)
from deepmask_jax.families.embedmask.losses import embedmask_loss
from deepmask_jax.train.initialization import (fresh_variables,
                                               with_pretrained_trunk)
from deepmask_jax.train.optimizer import (Optimization, bias_aware_transform,
                                          step_schedule)
from deepmask_jax.train.train_step import AXIS
from deepmask_jax.train.validation_source import ValidationSource

HEAD = 'instances'  # EmbedMask has one kind of batch.
BATCH_KEYS = ('image', 'boxes', 'classes', 'valid', 'masks', 'mask_points')
INIT_SIDE = 128  # Any canvas gives the parameter shapes; P7 needs >= 128 px.
# Figures kept from the validation pass (logged, and used to rank).
# AP by object size too: where a model trails (e.g. large boxes) shows there.
VALIDATION_FIGURES = (
    ('segm', 'AP'), ('segm', 'AP50'), ('segm', 'AP75'), ('segm', 'AP_small'),
    ('segm', 'AP_medium'), ('segm', 'AP_large'), ('bbox', 'AP'),
    ('bbox', 'AP_small'), ('bbox', 'AP_medium'), ('bbox', 'AP_large'),
    ('segm', 'AR@100'))


def trainable_prefixes(params: dict, freeze_at: int) -> tuple:
  """Paths of every parameter the solver updates: not the frozen stages, and
  no trunk conv bias.

  The reference's body convs have no bias and its FrozenBatchNorm2d shifts
  never train; our trunk's conv biases are those shifts (bn3's and the
  projection's, folded into conv3 / projection by the converter) or zeros
  standing in for no bias (before a norm), so they stay fixed too. A
  from-scratch trunk's GroupNorm shifts ('.../norm*/bias') train.
  """
  frozen = frozen_trunk_paths(freeze_at)
  prefixes = [top for top in params if top != 'trunk']
  for path in traverse_util.flatten_dict(params.get('trunk', {}), sep='/'):
    name = f'trunk/{path}'
    module = path.split('/')[-2]
    conv_bias = path.endswith('/bias') and not module.startswith('norm')
    if not name.startswith(frozen) and not conv_bias:
      prefixes.append(name)
  return tuple(prefixes)


class EmbedMaskFamily(Family):
  """EmbedMask V3 (reference_embedmask.md)."""

  name = 'embedmask'
  validation_name = 'val_coco'
  # Evaluation may change the thresholds and the input scale (e.g. the
  # paper's EmbedMask-600: --config.detection.min_size=600 max_size=1000).
  eval_overrides = Family.eval_overrides + (
      'embedmask.score_threshold', 'embedmask.nms_threshold',
      'embedmask.results_per_image', 'embedmask.mask_threshold',
      'detection.min_size', 'detection.max_size')

  def resolve_config(self, config):
    """Sets num_classes and the category list from the training dataset.

    A config that already lists its categories (config.embedmask.
    category_ids, e.g. written by an earlier resolve) is kept as it is.
    """
    given = tuple(config.embedmask.category_ids)
    if given:
      if len(given) != config.embedmask.num_classes:
        raise InputError(f'config.embedmask.category_ids lists {len(given)} '
                         f'categories but num_classes is '
                         f'{config.embedmask.num_classes}')
      return config
    from deepmask_jax.data import tfds_coco  # TensorFlow lives there.
    categories = tfds_coco.categories(tfds_coco.prepare(config.data))
    config = ml_collections.ConfigDict(config.to_dict())
    config.embedmask.num_classes = len(categories)
    config.embedmask.category_ids = tuple(int(c['id']) for c in categories)
    config.embedmask.category_names = tuple(str(c['name'])
                                            for c in categories)
    return config

  def build_model(self, config):
    return embedmask_from_config(config)

  def init_variables(self, config, model) -> dict:
    variables = fresh_variables(model, config.seed,
                                (1, INIT_SIDE, INIT_SIDE, 3))
    return with_pretrained_trunk(variables, config)

  def train_batches(self, config, *, start_step=0):
    from deepmask_jax.families.embedmask import pipeline as detection_pipeline  # TensorFlow.
    return detection_pipeline.train_batches(config, start_step=start_step)

  def validation_source(self, config) -> ValidationSource:
    from deepmask_jax.data.synthetic import ensure_synthetic  # No TF.
    ensure_synthetic(config.data)
    return ValidationSource.from_config(config)  # Whole images, no batches.

  def batch_keys(self, config) -> dict:
    return {HEAD: BATCH_KEYS}

  def head_of(self, batch: dict) -> str:
    return HEAD

  def loss_fn(self, config, model, head: str):
    settings = config.embedmask

    def loss(params, constants, batch, rng):
      del rng  # No dropout.
      outputs = model.apply({'params': params, 'constants': constants},
                            batch['image'], train=True)
      total, parts = embedmask_loss(outputs, batch, settings, axis_name=AXIS)
      # 'loss_cls' -> 'cls': the log shows instances_cls, instances_mask...
      parts = {name.removeprefix('loss_'): value
               for name, value in parts.items()}
      return total, dict(parts, loss=total)
    return loss

  def optimization(self, config, params: dict) -> Optimization:
    em = config.embedmask
    return Optimization(
        groups={'all': trainable_prefixes(params, config.embedmask.freeze_at)},
        heads={HEAD: ('all',)},
        transform=bias_aware_transform(config, em.bias_lr_factor,
                                       em.weight_decay_bias),
        learning_rate=step_schedule(config.schedule, config.batch_size))

  def validator(self, config, model, source, shard):
    del shard  # Whole images, one at a time, through the segmenter.
    # Checked once, before training starts; the report is printed once.
    ground_truth = load_ground_truth(source.json_path, source.image_dir)
    categories = check_categories(
        categories_of(config.embedmask), ground_truth.coco.dataset['categories'],
        True, source.json_path, consequence='checkpoints are ranked by AP with '
        'categories, so validation needs the training categories')
    if not categories.class_aware:
      raise DataError(categories.line)
    segmenter = None  # Built once, so its program compiles once per run.

    def validate(variables):
      nonlocal segmenter
      variables = jax.device_get(variables)
      if segmenter is None:
        segmenter = InstanceSegmenter(model, variables, config)
      segmenter.variables = jax.device_put(variables)
      with tempfile.TemporaryDirectory() as out_dir:
        figures = evaluate_per_image(segmenter, ground_truth, out_dir,
                                     max_images=source.num_images,
                                     verbose=False)
      flat = {f'{kind}_{name}': figures[kind][name]
              for kind, name in VALIDATION_FIGURES}
      flat['images'] = figures['num_images']
      return flat
    return validate

  def rank(self, figures: dict) -> tuple:
    return (figures['segm_AP'], figures['bbox_AP'])

  def evaluate(self, config, model, variables, out_dir: str) -> dict:
    from deepmask_jax.data.synthetic import ensure_synthetic  # No TF.
    ensure_synthetic(config.data)
    root = config.data.root
    predictor = self.predictor(config, model, variables)
    ground_truth = load_ground_truth(
        os.path.join(root, config.data.val_json),
        os.path.join(root, config.data.val_images))
    return evaluate_per_image(predictor, ground_truth, out_dir,
                              max_images=config.evaluation.max_images or None)

  def predictor(self, config, model, variables, **overrides):
    """An InstanceSegmenter; `zoom` is DeepMask's (refused)."""
    if overrides.pop('zoom', False):
      raise InputError('zoom is a DeepMask/SharpMask pyramid setting; '
                       'EmbedMask runs at one scale')
    return InstanceSegmenter(model, variables, config, **overrides)
