"""Data parallelism: shard_map == pmap, and 8 devices == 1 on one global batch."""

import jax

from deepmask_jax.families import bind, get_family
from deepmask_jax.train.trainer import setup
from tests.conftest import max_difference, tiny_config
from tests.train.fake_batches import patch_batches

STEPS = 4


def small_config(**overrides):
  # Small patches keep 8-device CPU compiles quick; the geometry is the
  # reference's scaled down (iSz 64 -> wSz 96, fSz 4).
  config = tiny_config(**{'patch.object_window': 64, 'patch.label_size': 32,
                          'batch_size': 16, **overrides})
  return config


def run_steps(config, parallel, devices=None):
  """Parameters after STEPS steps alternating mask and score batches."""
  config.parallel = parallel
  family = bind(config)
  _, runner, state = setup(family, devices)
  state = runner.replicate(state)
  batches = patch_batches(config)
  heads = []
  for _ in range(STEPS):
    batch = next(batches)
    heads.append(bool(batch['is_mask']))
    state, _ = runner.step(state, batch, family.head_of(batch))
  return jax.device_get(state.params), heads


def test_shard_map_and_pmap_give_the_same_parameters(eight_devices):
  config = small_config()
  shard_map_params, heads = run_steps(config, 'shard_map')
  pmap_params, _ = run_steps(config, 'pmap')
  assert True in heads and False in heads  # Both heads were trained.
  assert max_difference(shard_map_params, pmap_params) < 1e-6


def test_eight_devices_match_one_device_on_the_same_global_batch(eight_devices):
  # Dropout masks are drawn per device, so they differ between 8 devices and
  # 1; without dropout the two computations are the same sum.
  config = small_config(**{'head.dropout': 0.0})
  eight, heads = run_steps(config, 'shard_map')
  one, _ = run_steps(config, 'shard_map', devices=jax.devices()[:1])
  assert True in heads and False in heads
  assert max_difference(eight, one) < 1e-5


def test_training_moves_only_the_groups_of_the_batch_head(eight_devices):
  """A mask batch updates trunk + mask head and leaves the score head alone."""
  config = small_config(**{'patch.hfreq': 0.0})  # Mask batches only.
  family = get_family(config.model)
  before = family.init_variables(config, family.build_model(config))['params']
  after, _ = run_steps(config, 'shard_map')
  assert max_difference(before['score_out'], after['score_out']) == 0.0
  assert max_difference(before['mask_head'], after['mask_head']) > 0.0
  assert max_difference(before['trunk'], after['trunk']) > 0.0


def test_evaluation_shard_spreads_a_batch_over_the_mesh_and_none_under_pmap():
  config = small_config()
  _, runner, _ = setup(bind(config))
  batch = patch_batches(config).__next__()
  sharded = runner.evaluation_shard({'image': batch['image']})['image']
  assert sharded.sharding == runner.sharded
  assert sharded.shape == batch['image'].shape
  config.parallel = 'pmap'
  _, runner, _ = setup(bind(config))
  assert runner.evaluation_shard is None
