r"""EmbedMask's learning curve: mask and box AP (by size too) along a training run.

  python experiments/embedmask_learning_curve.py \
      --config=configs/demo_embedmask.py --workdir=runs/curve [--points=4] \
      [--config.schedule.total_steps=3600 \
       --config.schedule.boundaries='(2700,3300)' ...]

Trains the config from scratch in WORKDIR (resumed if it holds checkpoints)
and validates `--points` times, evenly spaced, on every val image
(`evaluation.max_images`) with the family's own validator: segm and bbox AP,
AP_small/medium/large, segm AR@100. Prints one row per point with the step
and the wall time since the script started (dataset generation and TFDS
build included on a first run, as a new user sees it), and writes the rows
to WORKDIR/learning_curve.json. Used to choose configs/demo_embedmask.py's
recipe (experiments/README.md).
"""

import json
import os
import time

from deepmask_jax import console  # pylint: disable=g-bad-import-order  # First: quiets TF.
from absl import flags
from ml_collections import config_flags

STARTED = time.time()
FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/demo_embedmask.py',
                                'An EmbedMask configs/*.py file.')
flags.DEFINE_string('workdir', 'runs/embedmask_learning_curve',
                    'Training workdir (checkpoints, logs, the curve).')
flags.DEFINE_integer('points', 4, 'Validations along the run.')

COLUMNS = ('segm_AP', 'segm_AP_small', 'segm_AP_medium', 'segm_AP_large',
           'bbox_AP', 'bbox_AP_small', 'bbox_AP_medium', 'bbox_AP_large',
           'segm_AR@100')


def with_curve_validation(config, points: int):
  """The config validating `points` times on the whole val split."""
  config.eval_every_steps = max(1, config.schedule.total_steps // points)
  config.checkpoint_every_steps = config.eval_every_steps
  config.validation_images = config.evaluation.max_images
  return config


def recording(family, rows: list, every: int, last: int):
  """`family` whose validator appends (step, seconds, figures) to `rows`."""
  validator = family.validator

  def recorded_validator(*args, **kwargs):
    validate = validator(*args, **kwargs)

    def validate_and_record(variables):
      figures = validate(variables)
      step = min((len(rows) + 1) * every, last)
      rows.append(dict(step=step, seconds=round(time.time() - STARTED, 1),
                       **{k: figures[k] for k in COLUMNS}))
      return figures
    return validate_and_record

  family.validator = recorded_validator
  return family


def print_table(rows: list) -> None:
  print(f"{'step':>6} {'min':>6} " + ' '.join(f'{c:>14}' for c in COLUMNS))
  for row in rows:
    print(f"{row['step']:>6} {row['seconds'] / 60:>6.1f} "
          + ' '.join(f'{row[c]:>14.3f}' for c in COLUMNS))


def main(argv):
  del argv
  from deepmask_jax import families  # pylint: disable=g-import-not-at-top
  from deepmask_jax.config_renames import apply_renames  # pylint: disable=g-import-not-at-top
  from deepmask_jax.train.trainer import train_and_evaluate  # pylint: disable=g-import-not-at-top
  config = with_curve_validation(apply_renames(FLAGS.config), FLAGS.points)
  rows = []
  family = recording(families.bind(config), rows,
                     config.eval_every_steps, config.schedule.total_steps)
  train_and_evaluate(family, FLAGS.workdir)
  print_table(rows)
  with open(os.path.join(FLAGS.workdir, 'learning_curve.json'), 'w') as f:
    json.dump(rows, f, indent=2)


def log_path() -> str:
  """Library output and tracebacks: WORKDIR/log.txt, as in `main`."""
  os.makedirs(FLAGS.workdir, exist_ok=True)
  return os.path.join(FLAGS.workdir, 'log.txt')


if __name__ == '__main__':
  console.run_app(main, log_path=log_path)
