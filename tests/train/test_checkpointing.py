"""Checkpoints: a killed run resumes exactly, also past a damaged step; last K
and best kept; NaN stops. (Disk faults case by case: test_checkpoint_faults.py.)"""

import os
import shutil
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest

from deepmask_jax.models.checksums import MANIFEST
from deepmask_jax.models.store import load_model, load_training_checkpoint
from deepmask_jax.train.checkpointing import Checkpoints
from tests.conftest import REPO

STEPS = 12


def start_training(workdir, steps=STEPS, *extra):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=2')
  return subprocess.Popen(
      [sys.executable, '-m', 'tests.train.run_training', str(workdir),
       str(steps), *map(str, extra)],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
      text=True)


def finish(process, timeout=600):
  output, _ = process.communicate(timeout=timeout)
  return process.returncode, output


def steps_saved(workdir):
  directory = os.path.join(workdir, 'checkpoints')
  if not os.path.isdir(directory):
    return []
  return sorted(int(n) for n in os.listdir(directory) if n.isdigit())


def steps_sealed(workdir):
  """Saved steps whose checksums are written (a save that finished)."""
  return [s for s in steps_saved(workdir) if os.path.isfile(
      os.path.join(workdir, 'checkpoints', str(s), MANIFEST))]


def assert_same_final_step(workdir, reference_dir):
  """The final checkpoints of two runs hold the same parameters.

  (load_model would take the best-validated step, which may predate a kill.)
  """
  assert max(steps_saved(workdir)) == STEPS
  resumed, _ = load_training_checkpoint(str(workdir), STEPS)
  reference, _ = load_training_checkpoint(str(reference_dir), STEPS)
  for a, b in zip(jax.tree.leaves(resumed), jax.tree.leaves(reference)):
    np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


@pytest.fixture(scope='module')
def uninterrupted(tmp_path_factory):
  workdir = tmp_path_factory.mktemp('uninterrupted')
  code, output = finish(start_training(workdir))
  assert code == 0, output
  return workdir, output


def test_killed_run_resumes_to_the_same_parameters(uninterrupted, tmp_path):
  reference_dir, _ = uninterrupted
  process = start_training(tmp_path)
  deadline = time.time() + 600
  while not [s for s in steps_sealed(tmp_path) if 2 <= s < STEPS]:
    assert process.poll() is None, process.communicate()[0]
    assert time.time() < deadline, 'no checkpoint appeared'
    time.sleep(0.2)
  process.send_signal(signal.SIGKILL)
  process.wait()
  killed_at = max(steps_saved(tmp_path))
  assert killed_at < STEPS
  code, output = finish(start_training(tmp_path))
  assert code == 0, output
  assert 'Resumed from step' in output
  assert_same_final_step(tmp_path, reference_dir)


def test_resume_passes_over_a_damaged_newest_step(uninterrupted, tmp_path):
  reference_dir, _ = uninterrupted
  workdir = tmp_path / 'damaged'
  shutil.copytree(reference_dir, workdir)
  # One flipped byte in every array file of the final step.
  data = workdir / 'checkpoints' / str(STEPS) / 'state' / 'ocdbt.process_0' / 'd'
  for path in data.iterdir():
    content = bytearray(path.read_bytes())
    content[len(content) // 2] ^= 0xFF
    path.write_bytes(bytes(content))
  code, output = finish(start_training(workdir))
  assert code == 0, output
  assert f'checkpoint step {STEPS} in' in output, output
  assert 'does not match its checksum' in output
  assert f'Resumed from step {STEPS - 2}' in output
  assert_same_final_step(workdir, reference_dir)


def test_keeps_the_last_checkpoints_and_the_best_validated(uninterrupted):
  workdir, output = uninterrupted
  assert 'val_per_patch @ step 4' in output and 'ETA' in output
  checkpoints = Checkpoints(str(workdir))
  try:
    best = checkpoints.best_step()
    assert best in (4, 8, 12)
    kept = steps_saved(workdir)
    assert kept[-2:] == [10, 12]  # keep_checkpoints=2 ...
    assert best in kept  # ... plus the best by validation IoU.
    assert set(kept) <= {best, 10, 12}
  finally:
    checkpoints.close()


def test_tensorboard_events_are_written(uninterrupted):
  workdir, _ = uninterrupted
  events = os.listdir(os.path.join(workdir, 'tensorboard'))
  assert any(name.startswith('events.out.tfevents') for name in events)


def test_non_finite_loss_stops_training_and_keeps_the_last_good_checkpoint(
    tmp_path):
  code, output = finish(start_training(tmp_path, STEPS, 7))
  assert code != 0
  assert 'non-finite' in output and 'at step 7' in output
  assert steps_saved(tmp_path) == [4, 6]  # Nothing saved from step 7 on.
  variables, _ = load_model(str(tmp_path))
  assert all(np.isfinite(x).all() for x in jax.tree.leaves(variables))
