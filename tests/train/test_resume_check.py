"""A workdir remembers its config: a resume may change cadence, length and
evaluation fields only, unless --config.resume_changes=allow.

The comparison is tested on configs alone; a few runs resume a real
two-step workdir in-process (fake batches, tiny model)."""

import json
import shutil

import numpy as np
import pytest
from ml_collections import ConfigDict

from deepmask_jax.config_schema import get_config
from deepmask_jax.errors import CheckpointError, InputError
from deepmask_jax.families import bind
from deepmask_jax.train import trainer
from deepmask_jax.train.checkpointing import Checkpoints
from deepmask_jax.train.optimizer import step_schedule
from deepmask_jax.train.resume_check import (ALLOWED, check_arrays,
                                             check_resume, config_changes)
from tests.conftest import tiny_config, with_overrides
from tests.train import fake_batches
from tests.train.run_training import resume_config
from tests.train.test_optimizer import (change_steps, old_epoch_schedule,
                                        rates_at, stored_with_old_names)
from tests.train.test_checkpoint_faults import TinyState, save_steps, tiny_state

REFUSED = {  # kind: (field, new value)
    'batch size': ('batch_size', 8),
    'shape': ('trunk.depths', (1, 1, 2)),
    'head shape': ('head.feature_channels', 16),
    'optimizer': ('optimizer', 'adam'),
    'learning rate': ('schedule.learning_rates', (0.01, 0.005, 0.001)),
    'boundaries': ('schedule.boundaries', (10, 20)),
    'warmup': ('schedule.warmup_steps', 5),
    'bias factor': ('embedmask.bias_lr_factor', 1.0),
    'family': ('model', 'embedmask'),
    'data': ('data.root', 'data/other'),
    'seed': ('seed', 3),
    'dtype': ('dtype', 'bfloat16'),
}
ALLOWED_CHANGES = {
    'log cadence': ('log_every_steps', 7),
    'eval cadence': ('eval_every_steps', 9),
    'validation images': ('validation_images', 3),
    'checkpoint cadence': ('checkpoint_every_steps', 11),
    'keep': ('keep_checkpoints', 5),
    'run extension': ('schedule.total_steps', 2_400_000),
    'evaluation': ('evaluation.max_images', 10),
    'parallel': ('parallel', 'pmap'),
    'prefetch': ('data.prefetch', 2),
}


def changed(field: str, value, **more):
  return tiny_config(**{field: value}, **more)


def saved_as_json(config):
  """The config as a checkpoint stores it (lists where tuples were)."""
  return json.loads(config.to_json())


@pytest.mark.parametrize('field,value', REFUSED.values(), ids=REFUSED.keys())
def test_a_refused_change_is_one_line_naming_the_field_and_both_values(
    field, value):
  saved = tiny_config()
  old = saved
  for name in field.split('.'):
    old = old[name]
  with pytest.raises(InputError) as error:
    check_resume(saved_as_json(saved), changed(field, value), 'runs/x', 4)
  message = str(error.value)
  assert '\n' not in message
  assert f'{field} {old!r} -> {value!r}' in message, message
  assert 'step 4' in message and '--config.resume_changes=allow' in message
  assert '--config.init_from=runs/x' in message


def test_every_refused_change_is_named_in_the_one_line():
  config = changed('batch_size', 8, optimizer='adam')
  with pytest.raises(InputError) as error:
    check_resume(tiny_config(), config, 'runs/x', 4)
  assert "batch_size 32 -> 8; optimizer 'sgd' -> 'adam'" in str(error.value)


@pytest.mark.parametrize('field,value', ALLOWED_CHANGES.values(),
                         ids=ALLOWED_CHANGES.keys())
def test_an_allowed_change_resumes_and_is_printed(field, value):
  lines = check_resume(tiny_config(), changed(field, value), 'runs/x', 4)
  assert len(lines) == 1 and lines[0].startswith(f'resume from step 4: {field} ')
  assert 'may change on resume' in lines[0]


def test_allow_lets_refused_changes_through_one_line_each():
  config = changed('batch_size', 8, optimizer='adam', log_every_steps=7,
                   resume_changes='allow')
  lines = check_resume(tiny_config(), config, 'runs/x', 4)
  assert lines == [
      'resume from step 4: batch_size 32 -> 8 (changed with '
      '--config.resume_changes=allow)',
      'resume from step 4: log_every_steps 50 -> 7 (may change on resume)',
      "resume from step 4: optimizer 'sgd' -> 'adam' (changed with "
      '--config.resume_changes=allow)']


def test_an_unchanged_config_read_back_from_json_has_no_changes():
  config = tiny_config(**{'embedmask.category_ids': (1, 3)})
  assert config_changes(saved_as_json(config), config) == []


def test_a_field_the_checkpoint_lacks_is_not_compared():
  saved = saved_as_json(tiny_config())
  del saved['resume_changes'], saved['head']['dropout']
  assert config_changes(saved, tiny_config(**{'head.dropout': 0.1})) == []


def test_an_unknown_policy_is_refused():
  with pytest.raises(InputError, match="resume_changes must be 'refuse' or "
                     "'allow', got 'yes'"):
    check_resume(tiny_config(), tiny_config(resume_changes='yes'), 'x', 1)


def test_the_allowed_fields_are_fields_of_the_schema():
  schema = get_config()
  for field in ALLOWED:
    node = schema
    for name in field.split('.'):
      assert name in node, field
      node = node[name]


def test_arrays_of_other_shapes_stop_a_restore_in_one_line(tmp_path):
  save_steps(tmp_path, {2: None})
  wider = TinyState(step=np.int32(0),
                    params={'w': np.zeros((64, 32), np.float32),
                            'b': np.zeros(8, np.float32),
                            'extra': np.zeros(2, np.float32)},
                    constants=tiny_state(0).constants)
  checkpoints = Checkpoints(str(tmp_path), keep=10)
  try:
    with pytest.raises(CheckpointError) as error:
      checkpoints.restore(wider)
  finally:
    checkpoints.close()
  message = str(error.value)
  assert '\n' not in message
  assert 'params/extra: not in the checkpoint' in message
  assert 'params/w: (64, 64) -> (64, 32)' in message
  assert '2 of 5 arrays differ' in message
  assert f'--config.init_from={tmp_path}' in message


def test_check_arrays_names_only_the_first_few():
  saved = {f'params/a{i}': (i,) for i in range(6)}
  with pytest.raises(CheckpointError, match='; 3 more'):
    check_arrays(saved, {}, 'runs/x', 2)


# Resumes of a real workdir (8 host devices, see tests/conftest.py).


def run_config(**overrides):
  return with_overrides(resume_config(2), dict({'batch_size': 8}, **overrides))


def train(config, workdir):
  family = bind(config)
  return trainer.train_and_evaluate(family, str(workdir),
                                    **fake_batches.sources(family.config))


@pytest.fixture(scope='module')
def trained(tmp_path_factory):
  """A workdir trained for 2 steps (checkpoint at step 2)."""
  workdir = tmp_path_factory.mktemp('trained')
  train(run_config(), workdir)
  return workdir


@pytest.fixture
def workdir(trained, tmp_path):
  shutil.copytree(trained, tmp_path / 'run')
  return tmp_path / 'run'


def test_a_refused_resume_stops_before_the_model_is_built(workdir,
                                                          monkeypatch):
  def never(*args, **kwargs):
    raise AssertionError('the model was built')
  monkeypatch.setattr(trainer, 'setup', never)
  with pytest.raises(InputError, match='batch_size 8 -> 16'):
    train(run_config(batch_size=16), workdir)


def test_allowed_changes_resume_and_train_on(workdir, capsys):
  train(run_config(**{'schedule.total_steps': 4, 'log_every_steps': 2}),
        workdir)
  output = capsys.readouterr().out
  assert 'resume from step 2: schedule.total_steps 2 -> 4 (may change' in output
  assert 'resume from step 2: log_every_steps 1 -> 2 (may change' in output
  assert 'Resumed from step 2' in output
  checkpoints = Checkpoints(str(workdir))
  try:
    assert checkpoints.latest_step() == 4
    assert checkpoints.saved_config().schedule.total_steps == 4
  finally:
    checkpoints.close()


def test_allow_resumes_a_refused_change_with_it_printed(workdir, capsys):
  train(run_config(**{'schedule.total_steps': 4, 'seed': 5,
                      'resume_changes': 'allow'}), workdir)
  output = capsys.readouterr().out
  assert ('resume from step 2: seed 0 -> 5 (changed with '
          '--config.resume_changes=allow)') in output
  assert 'Resumed from step 2' in output


def test_allow_with_another_shape_stops_in_one_line(workdir):
  config = run_config(**{'head.feature_channels': 16,
                         'resume_changes': 'allow'})
  with pytest.raises(CheckpointError) as error:
    train(config, workdir)
  message = str(error.value)
  assert '\n' not in message and 'cannot be restored' in message
  assert 'params/' in message and '(8,) -> (16,)' in message, message
  assert f'--config.init_from={workdir}' in message


def test_a_workdir_saved_under_the_old_schedule_names_resumes(
    tmp_path, monkeypatch, capsys):
  # Checkpoints written before config.schedule stored maxload, num_epochs,
  # learning_rates, lr_boundaries_epochs and config.solver.
  saving = Checkpoints.save
  monkeypatch.setattr(Checkpoints, 'save', lambda self, state, config, *a: (
      saving(self, state, ConfigDict(stored_with_old_names(config.to_dict())),
             *a)))
  train(run_config(), tmp_path / 'run')
  monkeypatch.undo()
  checkpoints = Checkpoints(str(tmp_path / 'run'))
  try:
    saved = checkpoints.saved_config()
  finally:
    checkpoints.close()
  assert 'maxload' not in saved and 'solver' not in saved
  old = stored_with_old_names(run_config().to_dict())
  steps = change_steps(saved.schedule)
  np.testing.assert_array_equal(
      rates_at(step_schedule(saved.schedule, saved.batch_size), steps),
      rates_at(old_epoch_schedule(old), steps))
  train(run_config(**{'schedule.total_steps': 4}), tmp_path / 'run')
  output = capsys.readouterr().out
  assert ('maxload, num_epochs, learning_rates, lr_boundaries_epochs -> '
          'schedule.') in output
  assert 'resume from step 2: schedule.total_steps 2 -> 4 (may change' in output
  assert 'Resumed from step 2' in output
