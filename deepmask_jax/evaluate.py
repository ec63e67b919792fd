"""`--config.mode=eval`: evaluate a trained model with its family's standard figures.

The model (architecture and variables) comes from the workdir's checkpoint (the
best-ranked one, `config.evaluation.step` to choose another) or from a model
directory written by the converter; the data and evaluation settings come
from the config given on the command line (the family's `eval_overrides`), so
a model can be evaluated on another COCO-format split. Figures are printed and
saved to WORKDIR/eval_<data.name>/evaluation.json (the family writes its
results files beside it), so evaluations on different datasets do not
overwrite each other. The step evaluated is printed first and stored there
('step'; null for a converted model directory, which has none). The folder
is created only when there is something to write, so a failed evaluation
leaves none behind.
"""

import json
import os

import jax
import ml_collections

from deepmask_jax import families
from deepmask_jax.models import store

RESULTS_FILE = 'evaluation.json'


def _set(config, dotted: str, value) -> None:
  *parents, leaf = dotted.split('.')
  for name in parents:
    config = config[name]
  config[leaf] = value


def _get(config, dotted: str):
  for name in dotted.split('.'):
    config = config[name]
  return config


def load_for_evaluation(config, workdir: str):
  """(family, model, variables, step) of the model in `workdir`; the family
  is bound to the model's config with `config`'s eval_overrides merged in;
  step is None for a converted model directory."""
  variables, model_config, step = store.read_model(
      workdir, None if config.evaluation.step < 0 else config.evaluation.step)
  merged = ml_collections.ConfigDict(model_config.to_dict())
  for field in families.get_family(model_config.model).eval_overrides:
    _set(merged, field, _get(config, field))
  family = families.bind_resolved(merged)  # Resolved when it was trained.
  return family, family.build_model(), variables, step


def evaluated_line(workdir: str, step) -> str:
  """What is evaluated, in one line."""
  if step is None:
    return f'evaluating the converted model directory {workdir} (no step)'
  return f'evaluating step {step} of {workdir}'


def evaluate_checkpoint(config, workdir: str) -> dict:
  """Evaluates the model in `workdir`; returns the family's figures with
  'step' (None for a converted model directory) first."""
  family, model, variables, step = load_for_evaluation(config, workdir)
  config = family.config
  primary = jax.process_index() == 0  # Every process holds the same figures.
  if primary:
    print(evaluated_line(workdir, step), flush=True)
  out_dir = os.path.join(workdir, f'eval_{config.data.name}')
  results = {'step': step,
             **family.evaluate(model, variables, out_dir)}
  if primary:
    os.makedirs(out_dir, exist_ok=True)
    with open(os.path.join(out_dir, RESULTS_FILE), 'w') as f:
      json.dump(results, f, indent=2, default=str)
    print(f'wrote {os.path.join(out_dir, RESULTS_FILE)}', flush=True)
  return results
