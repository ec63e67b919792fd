"""Machinery for streamed inference: ordered bounded prefetching, encoder
pools and busy-time accounting.

Every stage hands work on through a bounded queue (a deque of futures of at
most `depth` entries), so memory stays bounded for any number of images and
outputs come in input order. A stage's exception is re-raised in the caller
when its item is reached (`Future.result`), with its message; a worker
process that dies raises `BrokenProcessPool` instead of hanging.
"""

import collections
import concurrent.futures
import contextlib
import itertools
import multiprocessing
import threading
import time
from typing import Callable, Iterable, Iterator


def prefetch(fn: Callable, items: Iterable, workers: int,
             depth: int) -> Iterator:
  """fn(item) for each item, in order, computed up to `depth` items ahead on
  `workers` threads (fn should release the GIL for most of its time: numpy
  and PIL do)."""
  with concurrent.futures.ThreadPoolExecutor(max(1, workers)) as pool:
    pending = collections.deque()
    try:
      for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= max(1, depth):
          yield pending.popleft().result()
      while pending:
        yield pending.popleft().result()
    finally:
      for future in pending:  # The consumer stopped or a stage failed.
        future.cancel()


def chunked(items: Iterable, size: int) -> Iterator[list]:
  """Consecutive lists of `size` items (the last may be shorter)."""
  iterator = iter(items)
  while chunk := list(itertools.islice(iterator, size)):
    yield chunk


class InlineExecutor(concurrent.futures.Executor):
  """An executor that runs each task at once on the calling thread."""

  def submit(self, fn, /, *args, **kwargs):
    future = concurrent.futures.Future()
    try:
      future.set_result(fn(*args, **kwargs))
    except Exception as error:  # pylint: disable=broad-except
      future.set_exception(error)
    return future


def process_pool(workers: int) -> concurrent.futures.Executor:
  """`workers` spawned processes, or the calling thread when 0.

  Spawned, not forked: forking a process that runs JAX's threads can
  deadlock the child.
  """
  if workers <= 0:
    return InlineExecutor()
  return concurrent.futures.ProcessPoolExecutor(
      workers, mp_context=multiprocessing.get_context('spawn'))


class StageClock:
  """Busy seconds per stage, added from any thread.

  A stage run by several threads or processes can be busy for longer than
  the wall time: `shares` divides by the wall time only, so a share above
  1 means that stage ran in parallel with itself.
  """

  def __init__(self):
    self.seconds = collections.defaultdict(float)
    self._lock = threading.Lock()
    self._start = time.perf_counter()

  def add(self, stage: str, seconds: float) -> None:
    with self._lock:
      self.seconds[stage] += seconds

  @contextlib.contextmanager
  def timing(self, stage: str):
    start = time.perf_counter()
    try:
      yield
    finally:
      self.add(stage, time.perf_counter() - start)

  def timed(self, stage: str, fn: Callable) -> Callable:
    """fn, with its calls' time added to `stage`."""
    def run(*args, **kwargs):
      with self.timing(stage):
        return fn(*args, **kwargs)
    return run

  def shares(self) -> dict:
    """Busy seconds of each stage / wall seconds since the clock started."""
    wall = time.perf_counter() - self._start
    return {stage: seconds / wall for stage, seconds in self.seconds.items()}
