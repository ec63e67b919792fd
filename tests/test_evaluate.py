"""`--config.mode=eval` (evaluate_checkpoint): the step it evaluated, printed
and stored; a converted model directory has none; a failure leaves no folder."""

import json
import os

import jax
import numpy as np
import pytest
from flax import struct

from deepmask_jax.config_schema import get_config
from deepmask_jax.errors import DataError
from deepmask_jax.evaluate import RESULTS_FILE, evaluate_checkpoint
from deepmask_jax.families import get_family
from deepmask_jax.models.store import save_model
from deepmask_jax.train.checkpointing import Checkpoints
from tests.evaluation.conftest import write_tiny_split
from tests.families.embedmask.test_family import tiny_embedmask_config
from tests.train.test_checkpoint_faults import truncate

FAMILY = get_family('embedmask')


@struct.dataclass
class State:
  step: jax.Array
  params: dict
  constants: dict


@pytest.fixture(scope='module')
def tiny_embedmask():
  """(variables, config) of a random tiny EmbedMask."""
  config = tiny_embedmask_config()
  return FAMILY.init_variables(config, FAMILY.build_model(config)), config


def save_steps(workdir, variables, config, ranks: dict) -> None:
  """Saves `variables` at the steps of `ranks` ({step: rank})."""
  checkpoints = Checkpoints(str(workdir), keep=10)
  try:
    for step, rank in ranks.items():
      checkpoints.save(State(np.int32(step), variables['params'],
                             variables['constants']),
                       config, {'segm_AP': rank}, (rank,))
  finally:
    checkpoints.close()


def eval_config(data_root, val_json='val.json'):
  """The command line's config: a tiny split, the model's small canvas."""
  config = get_config()
  config.data.name = 'tiny'
  config.data.root = str(data_root)
  config.data.val_json, config.data.val_images = val_json, 'images'
  config.evaluation.max_images = 0
  config.detection.min_size = config.detection.max_size = 64
  return config


def test_eval_names_and_stores_the_step_after_passing_a_damaged_one(
    tmp_path, tiny_embedmask, capsys):
  write_tiny_split(tmp_path / 'data', [(1, 'a'), (2, 'b'), (5, 'c')])
  workdir = tmp_path / 'run'
  save_steps(workdir, *tiny_embedmask, {2: 0.1, 4: 0.2})
  truncate(str(workdir), 4)  # The best step is damaged.
  results = evaluate_checkpoint(eval_config(tmp_path / 'data'), str(workdir))
  out, err = capsys.readouterr()
  assert 'step 4' in err and 'damaged' in err
  assert f'evaluating step 2 of {workdir}' in out
  assert results['step'] == 2
  with open(workdir / 'eval_tiny' / RESULTS_FILE) as f:
    stored = json.load(f)
  assert stored['step'] == 2 and 'AP' in stored['segm']


def test_eval_of_a_converted_model_directory_says_it_has_no_step(
    tmp_path, tiny_embedmask, capsys):
  write_tiny_split(tmp_path / 'data', [(1, 'a'), (2, 'b'), (5, 'c')])
  model_dir = tmp_path / 'converted'
  save_model(str(model_dir), *tiny_embedmask)
  evaluate_checkpoint(eval_config(tmp_path / 'data'), str(model_dir))
  assert (f'evaluating the converted model directory {model_dir} (no step)'
          in capsys.readouterr().out)
  with open(model_dir / 'eval_tiny' / RESULTS_FILE) as f:
    assert json.load(f)['step'] is None


def test_failed_eval_leaves_no_empty_results_folder(tmp_path, tiny_embedmask):
  model_dir = tmp_path / 'converted'
  save_model(str(model_dir), *tiny_embedmask)
  with pytest.raises(DataError, match='missing.json'):
    evaluate_checkpoint(eval_config(tmp_path / 'data', 'missing.json'),
                        str(model_dir))
  assert not os.path.exists(model_dir / 'eval_tiny')


def test_a_workdir_saved_with_old_config_names_evaluates(
    tmp_path, tiny_embedmask, capsys):
  write_tiny_split(tmp_path / 'data', [(1, 'a'), (2, 'b')])
  variables, config = tiny_embedmask
  old = config.to_dict()
  old['embedmask']['detections_per_image'] = old['embedmask'].pop(
      'results_per_image')
  old['eval_batches'] = old.pop('validation_images')
  save_steps(tmp_path / 'run', variables, type(config)(old), {2: 0.1})
  results = evaluate_checkpoint(eval_config(tmp_path / 'data'),
                                str(tmp_path / 'run'))
  assert results['step'] == 2
  assert ('embedmask.detections_per_image -> embedmask.results_per_image'
          in capsys.readouterr().out)
