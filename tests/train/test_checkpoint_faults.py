"""Checkpoints survive disk faults: damage is found before restore, a failed
save stops training and leaves earlier steps intact, nothing garbled loads.

Small pytrees saved through the trainer's Checkpoints class directly (no
training); tests/train/test_checkpointing.py resumes a real run past a
damaged step.
"""

import errno
import os
import shutil

import jax
import ml_collections
import numpy as np
import pytest
from flax import struct
from orbax.checkpoint._src.handlers import json_checkpoint_handler

from deepmask_jax.errors import CheckpointError
from deepmask_jax.models import checksums, store
from deepmask_jax.train.checkpointing import DAMAGED, Checkpoints


@struct.dataclass
class TinyState:
  step: jax.Array
  params: dict
  constants: dict


def tiny_state(step: int) -> TinyState:
  """A state whose values say which step wrote it."""
  return TinyState(step=np.int32(step),
                   params={'w': np.full((64, 64), step, np.float32),
                           'b': np.arange(8, dtype=np.float32) + step},
                   constants={'scale': np.full((4,), step, np.float32)})


CONFIG = ml_collections.ConfigDict({'model': 'deepmask', 'note': 'tiny'})


def save_steps(workdir, ranks: dict) -> None:
  """Saves tiny states at the steps in `ranks` (rank None: not validated)."""
  checkpoints = Checkpoints(str(workdir), keep=10)
  try:
    for step, rank in ranks.items():
      checkpoints.save(tiny_state(step), CONFIG,
                       None if rank is None else {'iou': rank},
                       None if rank is None else (rank,))
  finally:
    checkpoints.close()


def restore(workdir):
  checkpoints = Checkpoints(str(workdir), keep=10)
  try:
    return checkpoints.restore(jax.tree.map(np.asarray, tiny_state(0)))
  finally:
    checkpoints.close()


def step_dir(workdir, step: int) -> str:
  return os.path.join(workdir, 'checkpoints', str(step))


def array_file(workdir, step: int) -> str:
  """The largest file of the step's array store (holds 'w')."""
  data = os.path.join(step_dir(workdir, step), 'state', 'ocdbt.process_0', 'd')
  return max((os.path.join(data, n) for n in os.listdir(data)),
             key=os.path.getsize)


def truncate(workdir, step):
  path = array_file(workdir, step)
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) // 2)


def delete_array_file(workdir, step):
  os.remove(array_file(workdir, step))


def flip_byte(workdir, step):
  path = array_file(workdir, step)
  with open(path, 'r+b') as f:
    f.seek(os.path.getsize(path) // 2)
    byte = f.read(1)
    f.seek(-1, os.SEEK_CUR)
    f.write(bytes([byte[0] ^ 0xFF]))


def drop_checksums(workdir, step):
  """A crash after orbax's rename, before the checksums were written."""
  os.remove(os.path.join(step_dir(workdir, step), checksums.MANIFEST))


def drop_step_metadata(workdir, step):
  os.remove(os.path.join(step_dir(workdir, step), '_CHECKPOINT_METADATA'))


def garble_metrics(workdir, step):
  """A cut metrics json (orbax's CheckpointManager fails to open on it)."""
  path = os.path.join(step_dir(workdir, step), 'metrics', 'metrics')
  with open(path, 'r+b') as f:
    f.truncate(os.path.getsize(path) - 3)


DAMAGE = {
    truncate: 'truncated',
    delete_array_file: 'is missing',
    flip_byte: 'does not match its checksum',
    drop_checksums: 'no checksums.json: an unfinished save',
    drop_step_metadata: '_CHECKPOINT_METADATA is missing',
    garble_metrics: 'metrics/metrics has',
}


@pytest.mark.parametrize('damage', DAMAGE, ids=lambda f: f.__name__)
def test_resume_passes_over_a_damaged_newest_step(damage, tmp_path, capfd):
  save_steps(tmp_path, {2: 0.5, 4: 0.9})
  damage(tmp_path, 4)
  state = restore(tmp_path)
  assert int(state.step) == 2
  np.testing.assert_array_equal(state.params['w'], tiny_state(2).params['w'])
  err = capfd.readouterr().err
  assert 'checkpoint step 4 in' in err and DAMAGE[damage] in err, err
  assert 'the newest intact step is 2' in err
  # The damaged step is kept aside, so the resumed run can save step 4 again.
  assert os.listdir(tmp_path / DAMAGED) == ['4']
  save_steps(tmp_path, {4: None})
  assert int(restore(tmp_path).step) == 4


def test_a_half_written_step_is_named_removed_and_never_restored(
    tmp_path, capfd):
  save_steps(tmp_path, {2: None, 4: None})
  partial = step_dir(tmp_path, 6) + '.orbax-checkpoint-tmp'
  shutil.copytree(step_dir(tmp_path, 4), partial)
  os.remove(os.path.join(partial, checksums.MANIFEST))
  assert int(restore(tmp_path).step) == 4
  assert 'half-written' in capfd.readouterr().err
  assert not os.path.exists(partial)


def test_no_intact_step_stops_with_one_line_and_loads_nothing(tmp_path):
  save_steps(tmp_path, {2: None, 4: None})
  flip_byte(tmp_path, 4)
  truncate(tmp_path, 2)
  with pytest.raises(CheckpointError) as error:
    restore(tmp_path)
  message = str(error.value)
  assert '\n' not in message and 'no usable checkpoint' in message
  assert 'step 4: ' in message and 'step 2: ' in message
  assert not os.path.exists(tmp_path / DAMAGED)  # Nothing moved.


def no_space(*args, **kwargs):
  raise OSError(errno.ENOSPC, 'No space left on device')


def assert_intact(workdir, steps):
  for step in steps:
    assert checksums.find_damage(step_dir(workdir, step)) is None


def test_a_failed_save_stops_training_and_keeps_earlier_steps(
    tmp_path, monkeypatch):
  checkpoints = Checkpoints(str(tmp_path), keep=2)
  checkpoints.save(tiny_state(2), CONFIG)
  checkpoints.save(tiny_state(4), CONFIG)
  checkpoints.wait()
  # The disk fills up while orbax writes step 6 in its background thread.
  async def full_disk(*args, **kwargs):
    no_space()
  monkeypatch.setattr(json_checkpoint_handler.JsonCheckpointHandler,
                      '_save_fn', full_disk)
  checkpoints.save(tiny_state(6), CONFIG)
  with pytest.raises(CheckpointError) as error:
    checkpoints.wait()  # Or the next save: the error is not swallowed.
  checkpoints.close()  # Reports nothing twice.
  message = str(error.value)
  assert 'could not save checkpoint step 6' in message
  assert 'No space left on device' in message and 'steps on disk: [2, 4]' in message
  monkeypatch.undo()
  # keep=2 would have dropped step 2 had step 6 counted as saved.
  assert_intact(tmp_path, [2, 4])
  assert int(restore(tmp_path).step) == 4
  assert int(store.load_training_checkpoint(str(tmp_path))[0]['params']['b'][0]
             ) == 4


def test_a_save_failing_before_checksums_leaves_an_untrusted_step(
    tmp_path, monkeypatch, capfd):
  save_steps(tmp_path, {2: None})
  monkeypatch.setattr(checksums, 'write_manifest', no_space)
  checkpoints = Checkpoints(str(tmp_path), keep=10)
  checkpoints.save(tiny_state(4), CONFIG)
  with pytest.raises(CheckpointError, match='step 4.*No space left'):
    checkpoints.close()
  monkeypatch.undo()
  assert int(restore(tmp_path).step) == 2  # Step 4 has no checksums.
  assert 'checkpoint step 4 in' in capfd.readouterr().err


@pytest.mark.skipif(os.geteuid() == 0,
                    reason='root writes into read-only directories')
def test_a_read_only_directory_stops_training(tmp_path):
  save_steps(tmp_path, {2: None})
  directory = tmp_path / 'checkpoints'
  os.chmod(directory, 0o555)
  try:
    checkpoints = Checkpoints(str(tmp_path), keep=10)
    with pytest.raises(CheckpointError, match='could not save checkpoint step 4'):
      checkpoints.save(tiny_state(4), CONFIG)
      checkpoints.close()
  finally:
    os.chmod(directory, 0o755)
  assert_intact(tmp_path, [2])


def test_evaluation_reads_the_best_intact_step(tmp_path, capfd):
  save_steps(tmp_path, {2: 0.5, 4: 0.9, 6: 0.7})
  flip_byte(tmp_path, 4)
  garble_metrics(tmp_path, 6)  # Unranked now, and no longer the second best.
  variables, config = store.load_training_checkpoint(str(tmp_path))
  assert config.note == 'tiny'
  np.testing.assert_array_equal(variables['params']['b'],
                                tiny_state(2).params['b'])
  err = capfd.readouterr().err
  assert 'checkpoint step 4 in' in err and 'reading step 2 instead' in err
  assert os.path.isdir(step_dir(tmp_path, 4))  # Evaluation moves nothing.
  with pytest.raises(CheckpointError, match='step 4: .*checksum'):
    store.load_training_checkpoint(str(tmp_path), step=4)
  truncate(tmp_path, 2)
  with pytest.raises(CheckpointError, match='step 6: metrics/metrics has'):
    store.load_model(str(tmp_path))  # Tried after the ranked steps.
  drop_checksums(tmp_path, 6)
  with pytest.raises(CheckpointError, match='no usable checkpoint'):
    store.load_model(str(tmp_path))


def test_a_workdir_from_before_checksums_is_read_unverified(tmp_path, capfd):
  save_steps(tmp_path, {2: 0.9, 4: None})
  drop_checksums(tmp_path, 2)
  drop_checksums(tmp_path, 4)  # No step sealed: an older version wrote them.
  assert int(restore(tmp_path).step) == 4
  assert int(store.load_training_checkpoint(str(tmp_path))[0]['params']['b'][0]
             ) == 2  # The best validated step.
  err = capfd.readouterr().err
  assert 'have no checksums (written by an older version)' in err
  assert not os.path.exists(tmp_path / DAMAGED)


def test_a_lone_step_without_checksums_is_read_as_an_unfinished_save(
    tmp_path, capfd):
  save_steps(tmp_path, {2: None})
  drop_checksums(tmp_path, 2)  # Killed after orbax's rename, before sealing.
  assert int(restore(tmp_path).step) == 2
  assert int(store.load_training_checkpoint(str(tmp_path))[0]['params']['b'][0]
             ) == 2
  err = capfd.readouterr().err
  line = (f'checkpoint step 2 in {tmp_path / "checkpoints"} has no checksums.json: '
          'an unfinished save')
  assert err.count(line) == 2, err  # Once on resume, once on evaluation.
  assert 'read unverified, as it is the only step' in err
  assert 'have no checksums' not in err
  assert not os.path.exists(tmp_path / DAMAGED)
