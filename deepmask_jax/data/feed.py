"""The host end of every input pipeline: batches by step, errors as one line.

`Batches` wraps the iterator of a pipeline (a tf.data numpy iterator, a
Python generator, anything with __next__):

- an exception raised by any stage (a tf.data map or py_function, a
  generator, a reader) comes out of `next()` as a `PipelineError` naming the
  pipeline, the step and the original error in one line; the original stays
  chained (`__cause__`) for the log. tf.data wraps a Python error of a
  numpy_function in an OpError whose message repeats its traceback; only the
  error's own line is kept.
- a finite source that runs out is a PipelineError too, not a StopIteration
  that would end a loop early in silence.
- `close()` (also on garbage collection and as a context manager) drops the
  iterator at once: a tf.data iterator left for the interpreter's exit can
  abort or hang the process while its threads still run.

No TensorFlow here: it also wraps in-memory sources.
"""

import re

from deepmask_jax.errors import DataError

# The Python error inside a tf.data OpError message: 'ValueError: text'.
_INNER_ERROR = re.compile(r'\b([A-Z]\w*(?:Error|Exception)): (.+)')


class PipelineError(DataError):
  """A stage of an input pipeline failed; the run cannot go on."""


def error_line(error: BaseException) -> str:
  """'<Type>: <message>' of `error`, or of the Python error a tf.data error
  carries, on one line."""
  if isinstance(error, DataError):
    return str(error).splitlines()[0] if str(error) else type(error).__name__
  message = getattr(error, 'message', None) or str(error)
  first = message.strip().splitlines()[0] if message.strip() else ''
  if type(error).__module__.startswith('tensorflow'):
    inner = _INNER_ERROR.search(first)
    if inner:
      return f'{inner.group(1)}: {inner.group(2)}'
    first = re.sub(r'^\{\{function_node [^}]*\}\}\s*', '', first)
  return f'{type(error).__name__}: {first}' if first else type(error).__name__


class Batches:
  """An iterator of batches (module doc).

  Args:
    iterator: yields the batches.
    name: what the batches are for, e.g. "training batches of dataset 'x'".
    first: the number of the first batch, for messages (a training step).
    endless: whether running out is an error (training) or the end of the
      data (evaluation).
    unit: what a batch is called in messages ('step', 'batch').
  """

  def __init__(self, iterator, name: str, first: int = 1, endless: bool = True,
               unit: str = 'step'):
    self._iterator = iterator
    self.name = name
    self.next_number = first
    self.endless = endless
    self.unit = unit

  def __iter__(self):
    return self

  def __next__(self):
    if self._iterator is None:
      raise StopIteration
    where = f'{self.unit} {self.next_number}'
    try:
      batch = next(self._iterator)
    except StopIteration:
      self.close()
      if not self.endless:
        raise
      raise PipelineError(f'{self.name} ran out at {where}') from None
    except Exception as error:  # pylint: disable=broad-except
      self.close()
      raise PipelineError(
          f'{self.name} failed at {where}: {error_line(error)}') from error
    self.next_number += 1
    return batch

  def close(self) -> None:
    """Drops the source now; `next` then raises StopIteration."""
    iterator, self._iterator = self._iterator, None
    if iterator is not None and hasattr(iterator, 'close'):
      iterator.close()  # Generators run their `finally` blocks.

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    self.close()

  def __del__(self):
    self.close()
