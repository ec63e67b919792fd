"""The README's commands end to end: train the demo DeepMask, resume, evaluate.

Runs `python -m deepmask_jax.main --config=configs/demo.py` on a small
synthetic dataset it generates (the demo's own path, scaled down).
"""

import json
import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


SMALL_SYNTHETIC = ('--config.data.synthetic_train_images=24',
                   '--config.data.synthetic_val_images=8',
                   '--config.data.synthetic_image_size=96')


def run_module(module, *args, timeout=900):
  """`python -m module args` from the repository on one CPU device."""
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                        env=env, capture_output=True, text=True,
                        timeout=timeout)


def main(workdir, data_root, *overrides, config='configs/demo.py'):
  """The demo DeepMask command, scaled down to 4 steps on 24 small images."""
  return run_module(
      'deepmask_jax.main', f'--config={config}', f'--workdir={workdir}',
      f'--config.data.root={data_root}', *SMALL_SYNTHETIC,
      '--config.schedule.total_steps=4',
      '--config.eval_every_steps=4', '--config.checkpoint_every_steps=2',
      '--config.log_every_steps=2', '--config.validation_images=8',
      '--config.batch_size=8', *overrides)


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  root = tmp_path_factory.mktemp('main')
  result = main(root / 'run', root / 'synthetic')
  assert result.returncode == 0, result.stdout + result.stderr
  return root, result.stdout


def test_demo_trains_and_validates(trained):
  root, stdout = trained
  assert 'step 4/4' in stdout
  assert 'val_per_patch @ step 4' in stdout
  assert (root / 'synthetic' / 'annotations' / 'instances_train.json').exists()
  assert sorted(os.listdir(root / 'run' / 'checkpoints'))[-1] == '4'


def test_rerun_of_a_finished_run_resumes_and_takes_no_step(trained):
  root, _ = trained
  result = main(root / 'run', root / 'synthetic')
  assert result.returncode == 0, result.stderr
  assert 'Resumed from step 4' in result.stdout
  assert 'step 4/4' not in result.stdout


def test_eval_mode_reports_per_patch_and_per_image_figures(trained):
  root, _ = trained
  result = main(root / 'run', root / 'synthetic', '--config.mode=eval',
                '--config.evaluation.results_per_image=20')
  assert result.returncode == 0, result.stdout + result.stderr
  with open(root / 'run' / 'eval_synthetic' / 'evaluation.json') as f:
    figures = json.load(f)
  assert figures['per_patch']['patches'] == 8
  assert figures['per_image']['num_images'] == 8


def test_missing_dataset_names_the_expected_layout(tmp_path):
  result = main(tmp_path / 'run', tmp_path / 'nothing',
                '--config.data.synthetic=False')
  assert result.returncode != 0
  assert 'instances_train.json' in result.stderr + result.stdout
