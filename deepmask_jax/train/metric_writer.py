"""Training logs: one line per interval on stdout, and TensorBoard event files.

Only process 0 writes. The line carries a text progress bar, losses, the
learning rate, throughput and the ETA. TensorBoard event files are written
with `tf.summary` (TensorFlow is present wherever training runs, since the
input pipeline needs it; the `tensorboard` package itself is not required).
"""

import datetime
import sys
import time

import jax


def progress_bar(fraction: float, width: int = 20) -> str:
  filled = int(round(width * min(max(fraction, 0.0), 1.0)))
  return '[' + '#' * filled + '.' * (width - filled) + ']'


class MetricWriter:
  """Writes scalars to stdout and `WORKDIR/tensorboard`, images there too."""

  def __init__(self, workdir: str, total_steps: int, batch_size: int,
               start_step: int = 0, sample_name: str = 'patches'):
    self.enabled = jax.process_index() == 0
    self.sample_name = sample_name  # What a batch holds: patches, images.
    self.total_steps = total_steps
    self.batch_size = batch_size
    self._summary = None
    if self.enabled:
      import tensorflow as tf  # pylint: disable=g-import-not-at-top
      self._tf = tf
      self._summary = tf.summary.create_file_writer(f'{workdir}/tensorboard')
    self._last_time = time.time()
    self._last_step = start_step

  def write_train(self, step: int, scalars: dict) -> None:
    """Logs the means of an interval ending at `step` (steps taken so far)."""
    now = time.time()
    if step <= self._last_step:
      rate = float('nan')
    else:
      rate = (step - self._last_step) / max(now - self._last_time, 1e-9)
    self._last_time, self._last_step = now, step
    scalars = dict(scalars, **{f'{self.sample_name}_per_s':
                               rate * self.batch_size})
    if not self.enabled:
      return
    self._scalars('train', step, scalars)
    eta = ((self.total_steps - step) / rate) if rate == rate and rate > 0 else 0
    fields = ' '.join(f'{k}={v:.4g}' for k, v in scalars.items())
    print(f'{progress_bar(step / self.total_steps)} step {step}/'
          f'{self.total_steps} {fields} ETA '
          f'{datetime.timedelta(seconds=int(eta))}', flush=True)

  def reset_clock(self) -> None:
    """Excludes a pause (validation, checkpoint) from the next throughput."""
    self._last_time = time.time()

  def write_eval(self, step: int, name: str, scalars: dict) -> None:
    if not self.enabled:
      return
    self._scalars(name, step, scalars)
    fields = ' '.join(f'{k}={v:.4g}' for k, v in scalars.items())
    print(f'  {name} @ step {step}: {fields}', flush=True)

  def write_images(self, step: int, name: str, images: dict) -> None:
    """TensorBoard images `{name}/predictions/{key}`, one [H, W, 3] uint8 each."""
    if not self.enabled:
      return
    with self._summary.as_default(step=step):
      for key, image in images.items():
        self._tf.summary.image(f'{name}/predictions/{key}', image[None],
                               max_outputs=1)

  def _scalars(self, prefix: str, step: int, scalars: dict) -> None:
    with self._summary.as_default(step=step):
      for name, value in scalars.items():
        self._tf.summary.scalar(f'{prefix}/{name}', value)

  def close(self) -> None:
    if self._summary is not None:
      self._summary.flush()
      self._summary.close()
    sys.stdout.flush()
