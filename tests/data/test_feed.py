"""data/feed.py: pipeline errors as one PipelineError line; nothing-to-sample
datasets fail before the first step."""

import numpy as np
import pytest

from deepmask_jax.data import feed
from deepmask_jax.data.object_index import ObjectIndex
from deepmask_jax.families.deepmask import sampler as sampler_lib
from deepmask_jax.errors import DataError
from tests.conftest import tiny_config


def counting(fail_at=None, stop_at=None, closed=None):
  step = 1
  try:
    while stop_at is None or step < stop_at:
      if step == fail_at:
        raise KeyError('record 7')
      yield step
      step += 1
  finally:
    if closed is not None:
      closed.append(True)


def test_an_error_names_the_pipeline_and_the_step_and_closes_the_source():
  closed = []
  batches = feed.Batches(counting(fail_at=3, closed=closed), 'training batches',
                         first=1)
  assert [next(batches), next(batches)] == [1, 2]
  with pytest.raises(feed.PipelineError) as raised:
    next(batches)
  assert str(raised.value) == "training batches failed at step 3: KeyError: 'record 7'"
  assert isinstance(raised.value.__cause__, KeyError)
  assert closed == [True]
  assert isinstance(raised.value, DataError)


def test_an_endless_source_that_runs_out_is_an_error_a_finite_one_ends():
  with pytest.raises(feed.PipelineError, match='train ran out at step 13'):
    list(feed.Batches(counting(stop_at=3), 'train', first=11))
  assert list(feed.Batches(counting(stop_at=3), 'eval', endless=False)) == [1, 2]


def test_close_runs_the_generators_cleanup():
  closed = []
  with feed.Batches(counting(closed=closed), 'train') as batches:
    next(batches)
  assert closed == [True]
  with pytest.raises(StopIteration):
    next(batches)


class FakeTfError(Exception):
  """Looks like a tf.errors.OpError to error_line."""
  __module__ = 'tensorflow.python.framework.errors_impl'

  def __init__(self, message):
    super().__init__(message)
    self.message = message


def test_a_tf_data_error_keeps_only_the_python_errors_line():
  error = FakeTfError(
      '{{function_node __wrapped__IteratorGetNext}} Error in user-defined '
      'function passed to MapDataset:5 transformation with iterator: '
      'Iterator::Root::Prefetch: ValueError: no object qualifies\n'
      'Traceback (most recent call last):\n  File "x.py"\n')
  assert feed.error_line(error) == 'ValueError: no object qualifies'


def index_of(boxes, areas, crowd):
  n = len(boxes)
  return ObjectIndex(
      image_id=np.arange(1, n + 1), image_size=np.full((n, 2), 64, np.int32),
      first_object=np.arange(n + 1), object_slot=np.zeros(n, np.int32),
      label=np.zeros(n, np.int32), bbox=np.array(boxes, np.float32),
      area=np.array(areas, np.float32), iscrowd=np.array(crowd, bool))


def test_a_dataset_with_no_mask_sample_fails_up_front_with_counts():
  pytest.importorskip('tensorflow')
  from deepmask_jax.families.deepmask import input_pipeline  # pylint: disable=g-import-not-at-top
  index = index_of([[1, 1, 4, 4], [2, 2, 30, 30], [0, 0, 9, 9]],
                   [16, 900, 81], [False, True, False])
  sampler = sampler_lib.PatchSampler(
      index, sampler_lib.PatchGeometry.from_config(tiny_config().patch))
  with pytest.raises(DataError) as raised:
    input_pipeline.check_samples(sampler, 0.5, 'tiny', 'train')
  assert str(raised.value) == (
      "dataset 'tiny' (train, 3 images): none of its 3 objects qualifies as a "
      'mask sample (1 are crowds, 2 have an area under 100 px, 1 a box side '
      'under 5 px); nothing to draw mask batches from')
  # Score batches only (hfreq 1) can still be drawn from these objects.
  input_pipeline.check_samples(sampler, 1.0, 'tiny', 'train')
