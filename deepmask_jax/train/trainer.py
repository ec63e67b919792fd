"""`train_and_evaluate(family, workdir)`: the training loop of every family.

The family (deepmask_jax/families), bound to its resolved config
(families.bind(config)), supplies the config, model, batches, per-device
losses, optimisation, validation (figures, and prediction images for
TensorBoard) and the ranking of checkpoints; this loop names none of them.

Resumable at any step: the TrainState comes from the latest checkpoint and the
data stream restarts at that step (batch t is a pure function of the seed and
t). The workdir remembers its config: a resume that changes more than
cadence, length or evaluation fields is refused (train/resume_check.py). Losses are fetched from the device only at log, validation and checkpoint
points, so steps are dispatched without host round trips; a non-finite loss
found there stops training with the step named, before any further save, so
the last good checkpoint stays intact.

An error of the input pipeline (any stage, or a source that runs out) ends
training at once as a data.feed.PipelineError naming the step; the batch
iterator is closed on the way out, so no pipeline thread outlives the run.
"""

import time

import jax
import numpy as np

from deepmask_jax.data import feed
from deepmask_jax.train.checkpointing import Checkpoints
from deepmask_jax.train.initialization import with_pretrained_model
from deepmask_jax.train.metric_writer import MetricWriter
from deepmask_jax.train.parallel import DataParallel, check_batch_divisible
from deepmask_jax.train.resume_check import allows_changes, check_resume
from deepmask_jax.train.train_step import create_train_state, make_step_fns
from deepmask_jax.train.validation_source import ValidationSource


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or inf; training stopped."""


def _abstract(state, sharding):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding),
      state)


def _check_and_log(pending: list, writer: MetricWriter, checkpoints) -> None:
  """Fetches the pending step metrics, stops on a non-finite loss, logs means."""
  if not pending:
    return
  values = jax.device_get([metrics for _, _, metrics in pending])
  collected = {}
  for (step, head, _), metrics in zip(pending, values):
    if not np.isfinite(metrics['loss']):
      last = checkpoints.latest_step()
      raise NonFiniteLossError(
          f'non-finite {head} loss ({metrics["loss"]}) at step {step}; '
          f'training stopped. The last good checkpoint is step {last} in '
          f'{checkpoints.directory}.')
    for name, value in metrics.items():
      if name != 'lr':
        collected.setdefault(f'{head}_{name}', []).append(float(value))
  scalars = {name: float(np.mean(v)) for name, v in collected.items()}
  scalars['lr'] = float(values[-1]['lr'])
  writer.write_train(pending[-1][0], scalars)
  pending.clear()


def _training_batches(source, start: int) -> feed.Batches:
  """`source`'s batches from step start + 1, errors as PipelineError."""
  batches = source(start_step=start)
  if isinstance(batches, feed.Batches):
    return batches
  return feed.Batches(iter(batches), 'training batches', first=start + 1)


def setup(family, devices=None):
  """(model, DataParallel over `devices`, fresh TrainState) of a bound family."""
  config = family.config
  model = family.build_model()
  variables = with_pretrained_model(family.init_variables(model), config)
  optimization = family.optimization(variables['params'])
  loss_fns = {head: family.loss_fn(model, head) for head in optimization.heads}
  parallel = DataParallel(make_step_fns(optimization, loss_fns),
                          family.batch_keys(), config.parallel, devices)
  return model, parallel, create_train_state(config, variables, optimization)


def _start(family, checkpoints: Checkpoints):
  """(model, DataParallel, replicated TrainState): fresh, or resumed from the
  latest checkpoint once its config allows it (resume_check)."""
  step = checkpoints.latest_step()
  if step is not None:  # Checked before the model is even built.
    for line in check_resume(checkpoints.saved_config(step), family.config,
                             checkpoints.workdir, step):
      print(line, flush=True)
  model, parallel, state = setup(family)
  if step is not None:
    # Restored straight onto the devices it trains on: with several processes
    # a process cannot move its arrays onto the other processes' devices.
    state = checkpoints.restore(_abstract(state, parallel.state_sharding),
                                step)
    print(f'Resumed from step {int(state.step)} in {checkpoints.directory}',
          flush=True)
  return model, parallel, parallel.replicate(state)


def train_and_evaluate(family, workdir: str, *, train_source=None,
                       eval_source: ValidationSource | None = None) -> dict:
  """Trains `family`'s model in `workdir`; returns the last validation figures.

  Args:
    family: the model family bound to its resolved config, a ConfigDict
      following deepmask_jax/config_schema.py (families.bind(config)).
    workdir: checkpoints, TensorBoard files; resumed from if it has any.
    train_source: replaces `family.train_batches`: (start_step=) -> batches
      from that step on, e.g. in-memory batches.
    eval_source: replaces `family.validation_source()`, e.g. a tiny split.
  """
  config = family.config
  allows_changes(config)  # A bad --config.resume_changes fails first.
  check_batch_divisible(config.batch_size)
  checkpoints = Checkpoints(workdir, config.keep_checkpoints)
  batches = writer = None
  try:
    model, parallel, state = _start(family, checkpoints)
    start, end = int(state.step), family.total_steps()
    eval_source = eval_source or family.validation_source()
    validate_fn = family.validator(model, eval_source,
                                   parallel.evaluation_shard)
    batches = _training_batches(train_source or family.train_batches, start)
    writer = MetricWriter(workdir, end, config.batch_size, start,
                          family.sample_name)
    # Drawn by process 0 only, the one that writes TensorBoard files.
    images_fn = (family.prediction_images(model, eval_source)
                 if writer.enabled else None)
    return _train(family, parallel, state, (start, end), batches,
                  (validate_fn, images_fn), checkpoints, writer)
  finally:
    if batches is not None:
      batches.close()
    try:
      checkpoints.close()  # Raises CheckpointError if the last save failed.
    finally:
      if writer is not None:
        writer.close()


def _train(family, parallel, state, steps: tuple, batches,
           validation: tuple, checkpoints, writer) -> dict:
  """Steps (start, end] of the loop; returns the last validation figures.

  validation: (validate_fn, images_fn): variables -> figures, and variables
  -> TensorBoard images (or None).
  """
  config = family.config
  start, end = steps
  validate_fn, images_fn = validation
  pending, figures = [], {}
  for step in range(start + 1, end + 1):
    batch = next(batches)
    head = family.head_of(batch)
    state, metrics = parallel.step(state, batch, head)
    pending.append((step, head, metrics))
    checkpoints.raise_if_failed()
    is_last = step == end
    validate = step % config.eval_every_steps == 0 or is_last
    save = step % config.checkpoint_every_steps == 0 or validate
    if step % config.log_every_steps == 0 or save:
      _check_and_log(pending, writer, checkpoints)
    if validate:
      started = time.time()
      variables = {'params': state.params, 'constants': state.constants}
      figures = validate_fn(variables)
      figures['seconds'] = time.time() - started
      writer.write_eval(step, family.validation_name, figures)
      if images_fn is not None:
        writer.write_images(step, family.validation_name, images_fn(variables))
    if save:
      checkpoints.save(state, config, figures if validate else None,
                       family.rank(figures) if validate else None)
      writer.reset_clock()
  return figures
