"""Old config names still work for one release: moved to the new name, one line."""

import json
import sys

import numpy as np
import pytest
from absl import flags
from ml_collections import config_flags

from deepmask_jax import config_renames
from deepmask_jax.config_renames import apply_renames
from deepmask_jax.config_schema import get_config
from deepmask_jax.families import predictor_from_path
from deepmask_jax.models.store import config_from_json, save_model
from deepmask_jax.train.resume_check import config_changes
from tests.conftest import REPO
from tests.train.test_optimizer import config_file, stored_with_old_names


@pytest.fixture(autouse=True)
def fresh_lines(monkeypatch):
  """Each test sees its own deprecation lines (they print once per process)."""
  monkeypatch.setattr(config_renames, '_PRINTED', set())


def deprecation_lines(out: str) -> list:
  return [line for line in out.splitlines() if 'deprecated config' in line]


def command_line_config(monkeypatch, *overrides, name='deepmask'):
  """The config `--config=configs/<name>.py *overrides` gives main."""
  argv = ['main', f'--config={REPO / "configs" / f"{name}.py"}', *overrides]
  monkeypatch.setattr(sys, 'argv', argv)  # config_flags reads overrides here.
  values = flags.FlagValues()
  config_flags.DEFINE_config_file('config', None, 'config', flag_values=values,
                                  lock_config=True)
  values(argv)
  return values.config


def test_old_override_moves_to_the_new_field_with_one_line(monkeypatch, capsys):
  config = command_line_config(monkeypatch, '--config.eval_batches=3',
                               '--config.evaluation.num_proposals=7')
  apply_renames(config)
  assert config.validation_images == 3 * config.batch_size  # Were batches.
  assert config.evaluation.results_per_image == 7
  assert 'eval_batches' not in config
  lines = deprecation_lines(capsys.readouterr().out)
  assert len(lines) == 1
  assert 'eval_batches -> validation_images' in lines[0]
  assert 'evaluation.num_proposals -> evaluation.results_per_image' in lines[0]


def test_embedmask_eval_batches_already_counted_images():
  config = get_config()
  config.model, config.batch_size, config.eval_batches = 'embedmask', 4, 50
  config.embedmask.detections_per_image = 9
  apply_renames(config)
  assert config.validation_images == 50
  assert config.embedmask.results_per_image == 9


def test_a_config_without_old_names_prints_nothing(capsys):
  config = apply_renames(get_config())
  assert config.validation_images == get_config().validation_images
  assert not deprecation_lines(capsys.readouterr().out)


def test_a_stored_config_with_old_names_is_read_under_the_new(capsys):
  config = config_from_json('{"model": "deepmask", "batch_size": 8, '
                            '"eval_batches": 2, "inference": '
                            '{"num_proposals": 5}}')
  assert config.validation_images == 16
  assert config.inference.results_per_image == 5
  assert len(deprecation_lines(capsys.readouterr().out)) == 1


def test_a_model_directory_saved_with_old_names_predicts(tmp_path,
                                                         tiny_deepmask):
  model, variables, config = tiny_deepmask
  old = config.to_dict()
  del old['inference']['results_per_image']
  old['inference']['num_proposals'] = 4
  save_model(str(tmp_path / 'model'), variables, type(config)(old))
  predictor = predictor_from_path(str(tmp_path / 'model'))
  image = np.full((40, 48, 3), 128, np.uint8)
  assert predictor(image).masks.shape == (4, 40, 48)


def test_a_set_new_name_wins_over_the_old_one(capsys):
  config = get_config()
  config.model = 'embedmask'
  config.eval_batches = 50  # As an old config file would.
  config.validation_images = 4  # As a newer command line does.
  apply_renames(config)
  assert config.validation_images == 4
  assert deprecation_lines(capsys.readouterr().out) == [
      'warning: deprecated config names (they go in the next release): '
      'eval_batches ignored (validation_images is set)']


def test_old_epoch_overrides_become_steps_with_one_line(monkeypatch, capsys):
  config = command_line_config(monkeypatch, '--config.maxload=4',
                               '--config.num_epochs=2',
                               '--config.learning_rates=(1e-3,1e-4)',
                               '--config.lr_boundaries_epochs=(1,)')
  apply_renames(config)
  assert config.schedule.total_steps == 2 * 4
  assert config.schedule.boundaries == (4,)
  assert config.schedule.learning_rates == (1e-3, 1e-4)
  assert not {'maxload', 'num_epochs', 'learning_rates', 'solver'} & set(config)
  lines = deprecation_lines(capsys.readouterr().out)
  assert len(lines) == 1 and 'schedule.total_steps 8' in lines[0]


def test_maxload_alone_rescales_the_epochs_of_the_schedule(monkeypatch):
  # Old meaning: 300 epochs, the rate dropping after epochs 50 and 120.
  config = apply_renames(command_line_config(monkeypatch, '--config.maxload=4'))
  assert config.schedule.total_steps == 300 * 4
  assert config.schedule.boundaries == (50 * 4, 120 * 4)


def test_old_solver_fields_set_the_embedmask_schedule():
  config = get_config()
  config.model = 'embedmask'
  config.solver.base_lr, config.solver.gamma = 0.02, 0.5
  config.solver.steps, config.solver.max_iter = (10, 20), 30
  config.solver.bias_lr_factor = 3.0
  apply_renames(config)
  assert config.schedule.learning_rates == (0.02, 0.01, 0.005)
  assert config.schedule.boundaries == (10, 20)
  assert config.schedule.total_steps == 30
  assert config.embedmask.bias_lr_factor == 3.0
  assert 'solver' not in config


def test_the_other_familys_old_schedule_names_are_dropped_and_named(capsys):
  config = get_config()
  config.solver.max_iter = 5  # DeepMask never read config.solver.
  apply_renames(config)
  assert config.schedule.total_steps == get_config().schedule.total_steps
  assert ('solver.max_iter ignored (deepmask does not read them)'
          in deprecation_lines(capsys.readouterr().out)[0])


@pytest.mark.parametrize('name', ['deepmask', 'demo_sharpmask', 'embedmask',
                                  'demo_embedmask'])
def test_a_stored_config_with_old_schedule_names_is_its_config_file(name):
  config = config_file(name)
  stored = stored_with_old_names(config.to_dict())
  assert config_changes(stored, config) == []  # Resumes without a change.
  assert config_from_json(json.dumps(stored)).schedule == config.schedule


def test_old_epoch_names_keep_the_demo_epoch_of_500_batches(monkeypatch):
  """configs/demo.py had maxload 500: its old num_epochs / maxload overrides
  mean what they meant then (epochs of 4000 would make 16 epochs 64000 steps)."""
  config = apply_renames(command_line_config(
      monkeypatch, '--config.num_epochs=16', name='demo'))
  assert config.schedule.total_steps == 16 * 500
  assert config.schedule.boundaries == (6 * 500, 7 * 500)
  config = apply_renames(command_line_config(
      monkeypatch, '--config.maxload=150', '--config.num_epochs=2',
      name='demo'))
  assert config.schedule.total_steps == 2 * 150
  assert config.schedule.boundaries == (6 * 150, 7 * 150)
