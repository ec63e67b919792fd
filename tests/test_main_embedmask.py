"""The EmbedMask demo commands end to end, scaled down: train, resume, eval, CLI.

Runs `python -m deepmask_jax.main --config=configs/demo_embedmask.py` on a
small synthetic dataset it generates, then `--config.mode=eval` (COCO AP with
categories and class-agnostic AR) and the image CLI on the trained workdir.
"""

import json
import os

import pytest

from tests.test_main import SMALL_SYNTHETIC, run_module

STEPS = 4


def main(workdir, data_root, *overrides):
  return run_module(
      'deepmask_jax.main', '--config=configs/demo_embedmask.py',
      f'--workdir={workdir}', f'--config.data.root={data_root}',
      *SMALL_SYNTHETIC, '--config.detection.min_size=96',
      '--config.detection.max_size=96', f'--config.schedule.total_steps={STEPS}',
      '--config.eval_every_steps=4', '--config.checkpoint_every_steps=2',
      '--config.log_every_steps=2', '--config.validation_images=4',
      '--config.batch_size=4', '--config.evaluation.max_images=4',
      *overrides)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('embedmask')
  result = main(root / 'run', root / 'synthetic')
  assert result.returncode == 0, result.stdout + result.stderr
  return root, result.stdout


def test_demo_trains_logs_losses_and_validates_by_coco_ap(trained):
  root, stdout = trained
  assert f'step {STEPS}/{STEPS}' in stdout
  for name in ('instances_cls', 'instances_reg', 'instances_centerness',
               'instances_mask'):
    assert name in stdout
  assert f'val_coco @ step {STEPS}: segm_AP=' in stdout
  assert sorted(os.listdir(root / 'run' / 'checkpoints'))[-1] == str(STEPS)


def test_rerun_resumes_and_takes_no_step(trained):
  root, _ = trained
  result = main(root / 'run', root / 'synthetic')
  assert result.returncode == 0, result.stderr
  assert f'Resumed from step {STEPS}' in result.stdout


def test_eval_mode_reports_ap_with_categories_and_agnostic_ar(trained):
  root, _ = trained
  result = main(root / 'run', root / 'synthetic', '--config.mode=eval')
  assert result.returncode == 0, result.stdout + result.stderr
  with open(root / 'run' / 'eval_synthetic' / 'evaluation.json') as f:
    figures = json.load(f)
  assert figures['num_images'] == 4
  assert figures['step'] == STEPS
  assert f'evaluating step {STEPS} of' in result.stdout
  assert figures['categories']['outcome'] == 'same'
  for kind in ('segm', 'bbox'):
    assert {'AP', 'AP50', 'AP75', 'AR@100'} <= set(figures[kind])
  assert 'AP_small' in result.stdout and 'AR@1000' in result.stdout


def test_image_cli_writes_class_aware_results(trained):
  root, _ = trained
  out = root / 'cli'
  result = run_module('deepmask_jax.propose', f'--model={root / "run"}',
                      f'--images={root / "synthetic" / "val"}',
                      f'--out={out}', '--overlays=2')
  assert result.returncode == 0, result.stdout + result.stderr
  with open(out / 'images.json') as f:
    listed = json.load(f)
  with open(root / 'synthetic' / 'annotations' / 'instances_val.json') as f:
    categories = json.load(f)['categories']
  # The model's categories are the dataset's, names included.
  assert listed['categories'] == [{'id': c['id'], 'name': c['name']}
                                  for c in categories]
  assert len(listed['images']) == 8
  assert len(os.listdir(out / 'overlays')) == 8
