"""`train_and_evaluate(config, workdir)`: the training loop.

Resumable at any step: the TrainState comes from the latest checkpoint and the
data stream restarts at that step (batch t is a pure function of the seed and
t). Losses are fetched from the device only at log, validation and checkpoint
points, so steps are dispatched without host round trips; a non-finite loss
found there stops training with the step named, before any further save, so
the last good checkpoint stays intact.
"""

import time

import jax
import numpy as np

from deepmask_jax.evaluation.per_patch import PerPatchEvaluator
from deepmask_jax.models import model_from_config
from deepmask_jax.train.checkpointing import Checkpoints
from deepmask_jax.train.initialization import initial_variables, resolve_config
from deepmask_jax.train.metric_writer import MetricWriter
from deepmask_jax.train.parallel import DataParallel, check_batch_divisible
from deepmask_jax.train.train_step import create_train_state, make_step_fns


class NonFiniteLossError(FloatingPointError):
  """The loss became NaN or inf; training stopped."""


def total_steps(config) -> int:
  return int(config.num_epochs) * int(config.maxload)


def _default_sources():
  from deepmask_jax.data import input_pipeline  # TensorFlow lives there.
  return input_pipeline.train_batches, input_pipeline.eval_batches


def _process_slice(batch: dict) -> dict:
  """This process's share of a global (evaluation) batch."""
  n, i = jax.process_count(), jax.process_index()
  return {k: (v[i * (len(v) // n):(i + 1) * (len(v) // n)]
              if np.ndim(v) else v) for k, v in batch.items()}


def _abstract(state, sharding):
  return jax.tree.map(
      lambda x: jax.ShapeDtypeStruct(np.shape(x), x.dtype, sharding=sharding),
      state)


def _check_and_log(pending: list, writer: MetricWriter, checkpoints) -> None:
  """Fetches the pending step metrics, stops on a non-finite loss, logs means."""
  if not pending:
    return
  values = jax.device_get([metrics for _, _, metrics in pending])
  per_head = {}
  for (step, head, _), metrics in zip(pending, values):
    if not np.isfinite(metrics['loss']):
      last = checkpoints.latest_step()
      raise NonFiniteLossError(
          f'non-finite {head} loss ({metrics["loss"]}) at step {step}; '
          f'training stopped. The last good checkpoint is step {last} in '
          f'{checkpoints.directory}.')
    per_head.setdefault(head, []).append(float(metrics['loss']))
  scalars = {f'{head}_loss': float(np.mean(v)) for head, v in per_head.items()}
  scalars['lr'] = float(values[-1]['lr'])
  writer.write_train(pending[-1][0], scalars)
  pending.clear()


def train_and_evaluate(config, workdir: str, *, train_source=None,
                       eval_source=None) -> dict:
  """Trains `config.model` in `workdir`; returns the last validation figures.

  Args:
    config: a ConfigDict following deepmask_jax/config_schema.py.
    workdir: checkpoints, TensorBoard files; resumed from if it has any.
    train_source / eval_source: replacements for the tf.data pipeline
      (`input_pipeline.train_batches` / `eval_batches` signatures), e.g.
      in-memory batches for benchmarks.
  """
  config = resolve_config(config)
  check_batch_divisible(config.batch_size)
  default_train, default_eval = (None, None) if (train_source and eval_source) \
      else _default_sources()
  train_source, eval_source = (train_source or default_train,
                               eval_source or default_eval)
  model = model_from_config(config)
  parallel = DataParallel(make_step_fns(config, model), config.parallel)
  checkpoints = Checkpoints(workdir, config.keep_checkpoints)
  state = create_train_state(config, initial_variables(config, model))
  if checkpoints.latest_step() is not None:
    sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
    state = checkpoints.restore(_abstract(state, sharding))
    print(f'Resumed from step {int(state.step)} in {checkpoints.directory}',
          flush=True)
  state = parallel.replicate(state)
  start, end = int(state.step), total_steps(config)
  shard_eval = (None if config.parallel == 'pmap' else
                lambda b: {k: jax.make_array_from_process_local_data(
                    parallel.sharded, v) for k, v in b.items()})
  evaluator = PerPatchEvaluator(model, shard=shard_eval)
  batches = train_source(config, start_step=start)
  writer = MetricWriter(workdir, end, config.batch_size, start)
  pending, figures = [], {}
  try:
    for step in range(start + 1, end + 1):
      batch = next(batches)
      head = 'mask' if bool(batch['is_mask']) else 'score'
      state, metrics = parallel.step(state, batch)
      pending.append((step, head, metrics))
      is_last = step == end
      validate = step % config.eval_every_steps == 0 or is_last
      save = step % config.checkpoint_every_steps == 0 or validate
      if step % config.log_every_steps == 0 or save:
        _check_and_log(pending, writer, checkpoints)
      if validate:
        started = time.time()
        variables = {'params': state.params, 'constants': state.constants}
        figures = evaluator.run(variables, map(_process_slice,
                                               eval_source(config)))
        figures['seconds'] = time.time() - started
        writer.write_eval(step, 'val_per_patch', figures)
      if save:
        checkpoints.save(state, config, figures if validate else None)
        writer.reset_clock()
  finally:
    checkpoints.wait()
    checkpoints.close()
    writer.close()
  return figures
