"""Streamed proposals: the same output as the per-image path, in order,
bounded look-ahead, errors surfacing in the caller."""

import glob
import os

import numpy as np
import pytest

from deepmask_jax.families.deepmask.generator import ProposalGenerator
from deepmask_jax.inference.images import read_image
from deepmask_jax.inference.rle import encode_packed
from deepmask_jax.inference.streaming import (StageClock, prefetch,
                                              process_pool)
from tests.conftest import COCO_TINY
from tests.families.deepmask.test_generator import image_of

NUM = 20


def coco_tiny_images(count):
  """The first `count` 640x480 images and one of another size."""
  paths = sorted(glob.glob(os.path.join(COCO_TINY, 'val2017', '*.jpg')))
  if not paths:
    pytest.skip(f'no COCO sample at {COCO_TINY}/val2017')
  images = [read_image(p) for p in paths]
  same = [i for i in images if i.shape[:2] == (480, 640)][:count - 1]
  other = [i for i in images if i.shape[:2] != (480, 640)][:1]
  return same[:1] + other + same[1:]


def assert_same(streamed, reference):
  assert len(streamed) == len(reference)
  for got, want in zip(streamed, reference):
    np.testing.assert_array_equal(got.scores, want.scores)
    assert [r['counts'] for r in got.rles] == [r['counts'] for r in want.rles]
    assert [r['size'] for r in got.rles] == [r['size'] for r in want.rles]
    np.testing.assert_array_equal(got.boxes, want.boxes)
    assert (got.height, got.width) == (want.height, want.width)


@pytest.mark.parametrize('kind', ['deepmask', 'sharpmask'])
def test_stream_equals_the_per_image_path_on_coco_tiny(
    kind, tiny_deepmask, tiny_sharpmask):
  model, variables, config = (tiny_deepmask if kind == 'deepmask'
                              else tiny_sharpmask)
  images = coco_tiny_images(3)
  # Three pyramid levels (scales 2^-2, 2^-1.5, 2^-1) keep the test fast.
  generator = ProposalGenerator(model, variables, config, results_per_image=NUM,
                                scale_min=-2.0, scale_max=-1.0,
                                images_per_call=3, encode_workers=1)
  clock = StageClock()
  streamed = list(generator.stream(iter(images), clock))
  reference = [generator.propose_one(image) for image in images]
  assert_same(streamed, reference)
  assert all(len(r.rles) == NUM for r in streamed)
  # Same-shape canvases of different images shared calls (batch > 1).
  assert any(shape[0][0] > 1 for shape in generator.network._shapes['network'])
  assert {'prepare', 'device', 'fetch', 'encode'} <= set(clock.seconds)


def test_stream_keeps_order_and_reads_a_bounded_distance_ahead(
    tiny_deepmask):
  generator = ProposalGenerator(*tiny_deepmask, results_per_image=5,
                                images_per_call=2, prefetch_images=2,
                                encode_workers=0)
  sizes = [(40 + 3 * i, 50 + 7 * i) for i in range(9)]
  pulled = []

  def images():
    for i, size in enumerate(sizes):
      pulled.append(i)
      yield image_of(*size, seed=i)

  for count, proposals in enumerate(generator.stream(images()), 1):
    assert (proposals.height, proposals.width) == sizes[count - 1]
    # prefetch + the group on the device + the group being encoded.
    assert len(pulled) <= count + 2 + 2 * 2
  assert count == len(sizes)


def test_a_bad_image_fails_the_stream_with_its_message(tiny_deepmask):
  generator = ProposalGenerator(*tiny_deepmask, results_per_image=5,
                                images_per_call=2, encode_workers=0)
  images = [image_of(30, 40), np.zeros((30, 40, 3), np.float32),
            image_of(30, 40, seed=1)]
  stream = generator.stream(images)
  with pytest.raises(TypeError, match='images must be uint8'):
    list(stream)


def test_an_encoding_worker_error_reaches_the_caller():
  with process_pool(1) as pool:
    future = pool.submit(encode_packed, [np.zeros((1, 4, 1), np.float32)],
                         1, 8, 4)
    with pytest.raises(TypeError):
      future.result(timeout=60)


def test_encoding_failure_in_the_stream_is_raised(tiny_deepmask,
                                                  monkeypatch):
  from deepmask_jax.families.deepmask import generator as api  # pylint: disable=import-outside-toplevel

  def broken(*_):
    raise RuntimeError('encoder broke')
  monkeypatch.setattr(api, 'encode_packed', broken)
  generator = ProposalGenerator(*tiny_deepmask, results_per_image=5,
                                encode_workers=0)
  with pytest.raises(RuntimeError, match='encoder broke'):
    list(generator.stream([image_of(30, 40)]))


def test_prefetch_is_ordered_bounded_and_raises_in_order():
  seen = []

  def items():
    for i in range(10):
      seen.append(i)
      yield i

  out = []
  for value in prefetch(lambda i: i * i, items(), workers=3, depth=3):
    out.append(value)
    assert len(seen) <= len(out) + 3
  assert out == [i * i for i in range(10)]

  def fails(i):
    if i == 2:
      raise ValueError('item 2 is bad')
    return i
  got = []
  with pytest.raises(ValueError, match='item 2 is bad'):
    for value in prefetch(fails, range(6), workers=2, depth=2):
      got.append(value)
  assert got == [0, 1]


def test_streaming_twice_compiles_nothing_new(tiny_deepmask):
  generator = ProposalGenerator(*tiny_deepmask, results_per_image=5,
                                images_per_call=2, encode_workers=0)
  images = [image_of(60, 80, seed=i) for i in range(3)]
  list(generator.stream(images))
  before = generator.compilations
  list(generator.stream(images[::-1]))
  assert generator.compilations == before
