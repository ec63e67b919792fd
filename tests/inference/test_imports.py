"""Inference, evaluation and the proposal CLI run without TensorFlow."""

import pathlib
import subprocess
import sys

REPO = pathlib.Path(__file__).resolve().parents[2]


def test_proposal_and_evaluation_modules_do_not_import_tensorflow():
  code = ('import sys\n'
          'import deepmask_jax.propose, deepmask_jax.inference.overlay\n'
          'import deepmask_jax.evaluation.per_image\n'
          'import deepmask_jax.evaluation.coco_proposals\n'
          "loaded = [m for m in sys.modules if m.split('.')[0] in "
          "('tensorflow', 'tensorflow_datasets')]\n"
          'print(loaded)\n'
          'assert not loaded, loaded\n')
  result = subprocess.run([sys.executable, '-c', code], cwd=REPO,
                          capture_output=True, text=True, check=False)
  assert result.returncode == 0, result.stdout + result.stderr
