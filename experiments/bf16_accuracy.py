r"""bf16 against float32 on the demo DeepMask: training accuracy and inference AR.

  python experiments/bf16_accuracy.py --config=configs/demo.py \
      --workdir=runs/bf16_accuracy [--config.schedule.total_steps=2000 ...]

Issue 9's criteria, checked in one run:
  (a) training: the demo DeepMask trained in bfloat16 reaches a per-patch mean
      IoU within --iou_tolerance (0.02) of the same run in float32. Each model
      is evaluated in the dtype it was trained in, on the same validation
      patches (`eval_batches` batches of the synthetic val split).
  (b) inference: the float32-trained model, run per image on synthetic val in
      float32 and in bfloat16 (`config.dtype`), scores segm AR@100 within
      --ar_tolerance (0.01).
The two runs train in WORKDIR/float32 and WORKDIR/bfloat16 (resumed, or taken
as they are when already trained); any config field can be overridden, e.g.
fewer steps with --config.schedule.total_steps. Prints the figures and PASS/FAIL and
writes them to WORKDIR/bf16_accuracy.json.
"""

import json
import os

from absl import app, flags
from ml_collections import config_flags

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/demo.py',
                                'A DeepMask configs/*.py file.')
flags.DEFINE_string('workdir', 'runs/bf16_accuracy',
                    'Holds the float32/ and bfloat16/ training workdirs.')
flags.DEFINE_float('iou_tolerance', 0.02, 'Largest per-patch mean IoU gap.')
flags.DEFINE_float('ar_tolerance', 0.01, 'Largest AR@100 gap.')
flags.DEFINE_integer('eval_batches', 50, 'Validation batches per patch model.')
flags.DEFINE_integer('max_images', 0, 'Per-image val images (0: all).')
flags.DEFINE_integer('step', -1, 'Checkpoint step compared in both workdirs '
                     '(-1: each one\'s best validated, else latest), e.g. '
                     'the last step both runs saved when cut short.')
flags.DEFINE_bool('skip_training', False, 'Compare existing workdirs as they '
                  'are (fails when one is missing).')

DTYPES = ('float32', 'bfloat16')


def with_dtype(config, dtype: str):
  copy = config.copy_and_resolve_references()
  copy.dtype = dtype
  return copy


def train(config, workdir: str) -> None:
  from deepmask_jax.families import bind
  from deepmask_jax.train.trainer import train_and_evaluate
  train_and_evaluate(bind(config), workdir)


def checkpoint(workdir: str, step: int):
  """(variables, config) of the workdir's checkpoint `step` (-1: best)."""
  from deepmask_jax.models.store import load_training_checkpoint
  return load_training_checkpoint(workdir, None if step < 0 else step)


def per_patch_mean_iou(workdir: str, step: int, eval_batches: int) -> dict:
  """Per-patch figures of a checkpoint of the workdir, in its own dtype."""
  from deepmask_jax.families.deepmask import input_pipeline  # TensorFlow lives there.
  from deepmask_jax.evaluation.per_patch import PerPatchEvaluator
  from deepmask_jax.families import build_model
  variables, config = checkpoint(workdir, step)
  return PerPatchEvaluator(build_model(config)).run(
      variables, input_pipeline.eval_batches(config, num_batches=eval_batches))


def per_image_ar(workdir: str, step: int, dtype: str, max_images: int) -> dict:
  """Per-image AR figures of a checkpoint of the workdir, run in `dtype`."""
  from deepmask_jax.evaluation.ground_truth import load_ground_truth
  from deepmask_jax.evaluation.per_image import evaluate_per_image
  from deepmask_jax.families import build_model
  from deepmask_jax.families.deepmask.generator import ProposalGenerator
  variables, config = checkpoint(workdir, step)
  config = with_dtype(config, dtype)
  generator = ProposalGenerator(build_model(config), variables, config,
                                results_per_image=config.evaluation.results_per_image)
  out_dir = os.path.join(workdir, f'eval_per_image_{dtype}')
  os.makedirs(out_dir, exist_ok=True)
  root = config.data.root
  return evaluate_per_image(
      generator, load_ground_truth(os.path.join(root, config.data.val_json),
                                   os.path.join(root, config.data.val_images),
                                   verbose=False),
      out_dir, max_images=max_images or None, verbose=False)


def verdict(name: str, a: float, b: float, tolerance: float) -> bool:
  passed = abs(a - b) <= tolerance
  print(f'{name}: float32 {a:.4f}  bfloat16 {b:.4f}  |diff| {abs(a - b):.4f} '
        f'(tolerance {tolerance}) -> {"PASS" if passed else "FAIL"}',
        flush=True)
  return passed


def main(argv):
  del argv
  from deepmask_jax.config_renames import apply_renames
  from deepmask_jax.data.synthetic import ensure_synthetic  # No TF.
  config = apply_renames(FLAGS.config)  # Old names (e.g. num_epochs) too.
  if config.model != 'deepmask':
    raise app.UsageError(f'compares DeepMask training; got {config.model}')
  ensure_synthetic(config.data)
  workdirs = {d: os.path.join(FLAGS.workdir, d) for d in DTYPES}
  if not FLAGS.skip_training:
    for dtype, workdir in workdirs.items():
      print(f'training {dtype} in {workdir}', flush=True)
      train(with_dtype(config, dtype), workdir)

  iou = {d: per_patch_mean_iou(w, FLAGS.step, FLAGS.eval_batches)
         for d, w in workdirs.items()}
  ar = {d: per_image_ar(workdirs['float32'], FLAGS.step, d, FLAGS.max_images)
        for d in DTYPES}
  print(f'per-patch ({iou["float32"]["patches"]} patches): '
        + '; '.join(f'{d} {json.dumps(f)}' for d, f in iou.items()))
  training_ok = verdict('per-patch mean IoU, trained in each dtype',
                        iou['float32']['mean'], iou['bfloat16']['mean'],
                        FLAGS.iou_tolerance)
  inference_ok = verdict('segm AR@100, float32 model inferred in each dtype',
                         ar['float32']['segm']['AR@100'],
                         ar['bfloat16']['segm']['AR@100'], FLAGS.ar_tolerance)
  print('bbox AR@100: ' + ', '.join(
      f'{d} {ar[d]["bbox"]["AR@100"]:.4f}' for d in DTYPES))
  print('seconds per image: ' + ', '.join(
      f'{d} {ar[d]["seconds_per_image"]:.3f}' for d in DTYPES))
  figures = {'per_patch': iou, 'per_image': ar,
             'training_within_tolerance': training_ok,
             'inference_within_tolerance': inference_ok}
  path = os.path.join(FLAGS.workdir, 'bf16_accuracy.json')
  with open(path, 'w') as f:
    json.dump(figures, f, indent=2, default=str)
  print(f'wrote {path}')


if __name__ == '__main__':
  app.run(main)
