"""`--config.mode=eval`: evaluate a training workdir's checkpoint, per patch and per image.

The model (architecture and variables) comes from the checkpoint; the data
and evaluation settings from the config given on the command line, so a
model can be evaluated on another COCO-format split. Figures are printed and
saved to WORKDIR/eval_<data.name>/evaluation.json (per-image proposals and AR
files go beside it), so evaluations on different datasets do not overwrite
each other.
"""

import json
import os

import ml_collections

from deepmask_jax.evaluation.per_image import evaluate_per_image
from deepmask_jax.evaluation.per_patch import PerPatchEvaluator
from deepmask_jax.models import model_from_config
from deepmask_jax.models.store import load_model
from deepmask_jax.train.checkpointing import load_latest_variables

RESULTS_FILE = 'evaluation.json'


def _model_and_variables(config, workdir: str):
  step = None if config.evaluation.step < 0 else config.evaluation.step
  if os.path.isdir(os.path.join(workdir, 'checkpoints')):
    variables, model_config = load_latest_variables(workdir, step)
  else:  # A converted model directory.
    variables, model_config = load_model(workdir)
  # Evaluate with the command line's data and evaluation settings.
  merged = ml_collections.ConfigDict(model_config.to_dict())
  for field in ('data', 'evaluation', 'eval_batches', 'seed'):
    merged[field] = config[field]
  merged.patch.flip = config.patch.flip
  return model_from_config(merged), variables, merged


def _per_patch(model, variables, config) -> dict:
  from deepmask_jax.data import input_pipeline  # TensorFlow lives there.
  return PerPatchEvaluator(model).run(variables,
                                      input_pipeline.eval_batches(config))


def _per_image(model, variables, config, out_dir: str) -> dict:
  from deepmask_jax.data.synthetic import ensure_synthetic  # No TensorFlow.
  ensure_synthetic(config.data)
  root = config.data.root
  return evaluate_per_image(
      model, variables, config, os.path.join(root, config.data.val_json),
      os.path.join(root, config.data.val_images), out_dir,
      num_proposals=config.evaluation.num_proposals,
      max_images=config.evaluation.max_images or None)


def evaluate_checkpoint(config, workdir: str) -> dict:
  """Evaluates the checkpoint in `workdir`; returns {'per_patch', 'per_image'}."""
  model, variables, config = _model_and_variables(config, workdir)
  out_dir = os.path.join(workdir, f'eval_{config.data.name}')
  os.makedirs(out_dir, exist_ok=True)
  results = {}
  if config.evaluation.per_patch:
    results['per_patch'] = _per_patch(model, variables, config)
    print('per patch:', ' '.join(f'{k}={v:.4g}' for k, v in
                                 results['per_patch'].items()), flush=True)
  if config.evaluation.per_image:
    results['per_image'] = _per_image(model, variables, config, out_dir)
  with open(os.path.join(out_dir, RESULTS_FILE), 'w') as f:
    json.dump(results, f, indent=2, default=str)
  print(f'wrote {os.path.join(out_dir, RESULTS_FILE)}', flush=True)
  return results
