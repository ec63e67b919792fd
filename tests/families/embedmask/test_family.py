"""EmbedMask's family: the data-parallel step, the solver, resume, validation."""

import functools

from flax import traverse_util
import jax
import numpy as np
import pytest

from deepmask_jax.config_schema import get_config
from deepmask_jax.errors import DataError
from deepmask_jax.families import bind, get_family
from deepmask_jax.families.embedmask.defaults import schedule_defaults
from deepmask_jax.models.store import load_training_checkpoint
from deepmask_jax.train.optimizer import select
from deepmask_jax.train.trainer import setup, train_and_evaluate
from deepmask_jax.train.validation_source import ValidationSource
from tests.conftest import max_difference, with_overrides
from tests.evaluation.conftest import write_tiny_split
from deepmask_jax.families.embedmask.random_batches import detection_batch, detection_batches

FAMILY = get_family('embedmask')


def tiny_embedmask_config(**overrides):
  """A tiny EmbedMask on 64-px canvases with 3 classes."""
  config = get_config()
  config.model = 'embedmask'
  config.trunk.stem_width = 8
  config.trunk.widths = (4, 8, 8, 8)
  config.trunk.depths = (1, 1, 1, 1)
  config.embedmask.fpn_channels = 8
  config.embedmask.num_convs = 1  # Towers of one conv compile faster.
  config.embedmask.embed_dim = 4
  config.embedmask.num_classes = 3
  config.embedmask.category_ids = (1, 2, 5)
  config.embedmask.category_names = ('a', 'b', 'c')
  config.detection.min_size = config.detection.max_size = 64
  config.detection.max_instances = 3
  config.batch_size = 8
  config.schedule = schedule_defaults()
  config.schedule.warmup_steps = 2
  return with_overrides(config, overrides)


def run_steps(config, steps, devices=None):
  _, runner, state = setup(bind(config), devices)
  state = runner.replicate(state)
  for step in range(steps):
    state, metrics = runner.step(state, detection_batch(config, step),
                                 'instances')
  return jax.device_get(state.params), jax.device_get(metrics)


def test_eight_devices_match_one_device_on_the_same_global_batch(
    eight_devices):
  config = tiny_embedmask_config()
  eight, metrics = run_steps(config, 2)
  one, one_metrics = run_steps(config, 2, devices=jax.devices()[:1])
  assert np.isfinite(metrics['loss']) and metrics['mask'] > 0
  np.testing.assert_allclose(metrics['loss'], one_metrics['loss'], rtol=1e-4)
  assert max_difference(eight, one) < 1e-4


def test_step_freezes_stem_and_layer1_and_moves_the_rest():
  config = tiny_embedmask_config(**{'embedmask.freeze_at': 2})
  before = FAMILY.init_variables(config, FAMILY.build_model(config))['params']
  after, _ = run_steps(config, 1, devices=jax.devices()[:1])
  for name in ('conv1', 'layer1_0'):
    assert max_difference(before['trunk'][name], after['trunk'][name]) == 0
  for name in ('layer2_0', 'layer4_0'):
    assert max_difference(before['trunk'][name], after['trunk'][name]) > 0
  assert max_difference(before['head'], after['head']) > 0


def test_biases_move_twice_as_far_as_weights_at_the_first_sgd_step():
  # Plain SGD, no decay: the first update is -lr * g, biases -2 lr * g.
  config = tiny_embedmask_config(momentum=0.0, weight_decay=0.0)
  model = FAMILY.build_model(config)
  variables = FAMILY.init_variables(config, model)
  optimization = FAMILY.optimization(config, variables['params'])
  grads = jax.tree.map(np.ones_like, variables['params'])
  direction, _ = optimization.transform.update(
      grads, optimization.transform.init(variables['params']),
      variables['params'])
  head = direction['head']
  bias = [v for p, v in jax.tree_util.tree_leaves_with_path(head)
          if p[-1].key == 'bias']
  kernels = [v for p, v in jax.tree_util.tree_leaves_with_path(head)
             if p[-1].key == 'kernel']
  assert bias and all(np.all(np.asarray(b) == 2.0) for b in bias)
  assert all(np.all(np.asarray(k) == 1.0) for k in kernels)


def test_trunk_biases_stay_fixed_as_frozen_bn_shifts():
  config = tiny_embedmask_config()
  params = FAMILY.init_variables(config, FAMILY.build_model(config))['params']
  trained = traverse_util.flatten_dict(select(
      params, FAMILY.optimization(config, params).groups['all']), sep='/')
  assert 'trunk/layer2_0/conv3/conv/kernel' in trained
  assert 'head/cls_logits/bias' in trained and 'fpn/p6/bias' in trained
  assert not [k for k in trained if k.startswith('trunk/')
              and k.endswith('/bias')]


def test_group_norm_trunk_trains_its_norms_but_no_conv_bias():
  config = tiny_embedmask_config(**{'trunk.norm': 'group'})
  variables = FAMILY.init_variables(config, FAMILY.build_model(config))
  assert not variables.get('constants')
  trained = traverse_util.flatten_dict(select(
      variables['params'],
      FAMILY.optimization(config, variables['params']).groups['all']),
      sep='/')
  assert 'trunk/layer2_0/norm3/bias' in trained
  assert 'trunk/layer2_0/norm_projection/scale' in trained
  assert 'trunk/layer2_0/conv3/conv/bias' not in trained


def test_learning_rate_warms_up_then_steps_down():
  # The reference steps its scheduler after each update: update t runs at
  # epoch t, warmup while t < warmup_steps (2), x0.1 from t = 5 and t = 8.
  config = tiny_embedmask_config(**{'schedule.boundaries': (5, 8)})
  rate = FAMILY.optimization(config, {'x': np.zeros(1)}).learning_rate
  base = 0.01 * 8 / 16  # Linear in the batch.
  np.testing.assert_allclose(
      [float(rate(s)) for s in (0, 1, 2, 4, 5, 7, 8, 9)],
      [base / 3, base / 3, base, base, base * 0.1, base * 0.1, base * 0.01,
       base * 0.01], rtol=1e-6)


def _validation_source(root):
  """Two 64-px images whose categories are the tiny model's."""
  json_path, image_dir = write_tiny_split(root, [(1, 'a'), (2, 'b'), (5, 'c')])
  return ValidationSource(json_path, image_dir, num_images=2)


def _train(config, workdir, eval_source):
  """train_and_evaluate on random batches; the last validation figures."""
  return train_and_evaluate(
      bind(config), str(workdir), eval_source=eval_source,
      train_source=functools.partial(detection_batches, config))


def test_resumed_run_ends_where_an_uninterrupted_one_does(tmp_path):
  config = tiny_embedmask_config(**{
      'schedule.total_steps': 4, 'checkpoint_every_steps': 2,
      'eval_every_steps': 4, 'log_every_steps': 2})
  source = _validation_source(tmp_path / 'val')
  figures = _train(config, tmp_path / 'full', source)
  assert figures['images'] == 2 and 0.0 <= figures['segm_AP'] <= 1.0
  half = tiny_embedmask_config(**{
      'schedule.total_steps': 2, 'checkpoint_every_steps': 2,
      'eval_every_steps': 100})
  _train(half, tmp_path / 'split', source)
  config.schedule.total_steps = 4
  _train(config, tmp_path / 'split', source)
  # The final step of each run, whichever checkpoint ranks best.
  full, _ = load_training_checkpoint(str(tmp_path / 'full'), step=4)
  split, saved = load_training_checkpoint(str(tmp_path / 'split'), step=4)
  assert saved.embedmask.category_names == ('a', 'b', 'c')
  assert max_difference(full, split) == 0.0


def test_bfloat16_compute_trains_float32_parameters():
  config = tiny_embedmask_config(dtype='bfloat16')
  params, metrics = run_steps(config, 1, devices=jax.devices()[:1])
  assert all(np.isfinite(float(v)) for v in metrics.values())
  assert {x.dtype for x in jax.tree.leaves(params)} == {np.dtype('float32')}


def test_validation_split_of_other_categories_fails_before_training(
    tmp_path):
  json_path, image_dir = write_tiny_split(tmp_path, [(1, 'person'),
                                                     (2, 'b'), (5, 'c')])
  config = tiny_embedmask_config()
  with pytest.raises(DataError, match='categories differ.*ranked by AP'):
    FAMILY.validator(config, None, ValidationSource(json_path, image_dir, 2),
                     None)
