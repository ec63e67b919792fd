"""tf.data input for DeepMask/SharpMask training and per-patch evaluation.

Batch t is a pure function of (seed, t, process_index, dataset): the head of
step t and every sample spec are drawn statelessly (sampler.py), so there is
no iterator state to checkpoint. A resumed run calls
`train_batches(config, start_step=t)` and gets exactly the batches an
uninterrupted run would have got from step t on.

Per step the pipeline draws the process's sample specs in numpy (cheap, from
the cached ObjectIndex), then per sample, in parallel tf.data maps that run
outside the GIL: fetch the record by index from the array_record data source,
parse it, decode the JPEG (and only the chosen object's PNG mask), crop,
resize, flip and normalise.

Global sample j of step t on process p has index
t * global_batch + p * local_batch + j, so the processes' slices are disjoint
and together form the global batch.
"""

import numpy as np
import tensorflow as tf

from deepmask_jax.data import feed
from deepmask_jax.data import tfds_coco
from deepmask_jax.data.object_index import ObjectIndex
from deepmask_jax.data.records import (RecordReader, load_object_index,
                                       process_slice)
from deepmask_jax.errors import DataError
from deepmask_jax.families.deepmask import patch_ops
from deepmask_jax.families.deepmask import sampler as sampler_lib

# evalPerPatch draws the same patches every time, whatever the training seed,
# so validation numbers of different runs are comparable.
EVAL_SEED = 0
_SPEC_KEYS = ('image_index', 'object_slot', 'window', 'label_window', 'flip',
              'score')


def _specs_fn(sampler, seed: int, hfreq: float, global_batch: int,
              first_sample: int, local_batch: int):
  """step -> this process's spec arrays for that step, plus its head."""
  def specs(step):
    step = int(step)
    is_mask = sampler_lib.is_mask_step(seed, step, hfreq)
    sample_ids = step * global_batch + first_sample + np.arange(local_batch)
    draw = sampler.mask_specs if is_mask else sampler.score_specs
    spec = draw(seed, sample_ids)
    return tuple(getattr(spec, key) for key in _SPEC_KEYS) + (
        np.full(local_batch, is_mask),)
  return specs


def _spec_dataset(steps: tf.data.Dataset, specs, local_batch: int):
  """Per-sample spec dicts, `local_batch` per step, in step order."""
  dtypes = (tf.int32, tf.int32, tf.int32, tf.int32, tf.bool, tf.float32, tf.bool)
  shapes = ((), (), (3,), (3,), (), (), ())

  def step_specs(step):
    arrays = tf.numpy_function(specs, [step], dtypes, stateful=False)
    return {key: tf.ensure_shape(array, (local_batch,) + shape)
            for key, array, shape in zip(_SPEC_KEYS + ('is_mask',), arrays, shapes)}

  return steps.map(step_specs).unbatch()


def _patch_fn(reader: RecordReader, index: ObjectIndex, patch_config):
  """Per-sample spec -> {'image', 'mask', 'score', 'is_mask'} (TF graph)."""
  geometry = sampler_lib.PatchGeometry.from_config(patch_config)
  image_ids = tf.constant(index.image_id)
  label_size = geometry.label_size

  def make_patch(spec):
    example = reader.read(spec['image_index'])
    # The index and the data source must agree on the record order.
    tf.debugging.assert_equal(example['image/id'],
                              tf.gather(image_ids, spec['image_index']))
    image, window = patch_ops.decode_jpeg_window(example['image'], spec['window'])
    patch = patch_ops.patch_image(image, window, geometry.window_size)

    def object_label():
      png = example['objects']['mask'][spec['object_slot']]
      mask = tf.io.decode_png(png, channels=1)
      return patch_ops.patch_label(mask, spec['label_window'], label_size)

    label = tf.cond(spec['is_mask'], object_label,
                    lambda: tf.zeros((label_size, label_size), tf.float32))
    flip = spec['flip']
    return {
        'image': patch_ops.normalise(
            patch_ops.flip_horizontally(patch, flip), patch_config.mean,
            patch_config.std),
        'mask': patch_ops.flip_horizontally(label, flip),
        'score': spec['score'],
        'is_mask': spec['is_mask'],
    }
  return make_patch


def _batched(samples: tf.data.Dataset, local_batch: int, prefetch: int):
  def batch_head(batch):
    return dict(batch, is_mask=batch['is_mask'][0])
  options = tf.data.Options()
  options.deterministic = True
  return (samples.batch(local_batch, drop_remainder=True)
          .map(batch_head).prefetch(prefetch).with_options(options))


def check_samples(sampler: sampler_lib.PatchSampler, hfreq: float,
                  dataset: str, split: str) -> None:
  """Fails with one line if the batches `hfreq` asks for cannot be drawn.

  Mask batches (hfreq < 1) need an object that qualifies as a mask sample,
  score batches (hfreq > 0) an image with an object of a usable scale.
  """
  index = sampler.index
  where = f"dataset '{dataset}' ({split}, {index.num_images} images)"
  if hfreq < 1 and not len(sampler.mask_categories):
    w, h = index.bbox[:, 2], index.bbox[:, 3]
    raise DataError(
        f'{where}: none of its {len(index.label)} objects qualifies as a mask '
        f'sample ({int(index.iscrowd.sum())} are crowds, '
        f'{int((index.area < 100).sum())} have an area under 100 px, '
        f'{int(((w < 5) | (h < 5)).sum())} a box side under 5 px); nothing to '
        'draw mask batches from')
  if hfreq > 0 and not len(sampler.score_images):
    raise DataError(f'{where}: no image has an object of a usable size; '
                    'nothing to draw score batches from')


def patch_dataset(config, builder, split: str, steps: tf.data.Dataset, *,
                  seed: int, hfreq: float, process_index=None,
                  process_count=None) -> tf.data.Dataset:
  """Batches of patches for the given steps (a dataset of int64 step numbers).

  Returns:
    A dataset of {'image': f32 [b, wSz, wSz, 3] normalised NHWC,
    'mask': f32 [b, gSz, gSz] in {-1, +1} (zeros in score batches),
    'score': f32 [b] in {-1, +1} (all +1 in mask batches),
    'is_mask': bool scalar}, b = the local batch.
  """
  first_sample, local_batch = process_slice(config.batch_size, process_index,
                                             process_count)
  reader = RecordReader(builder, split)
  index = load_object_index(builder, split)
  sampler = sampler_lib.PatchSampler(
      index, sampler_lib.PatchGeometry.from_config(config.patch))
  check_samples(sampler, hfreq, config.data.name, split)
  specs = _specs_fn(sampler, seed, hfreq, config.batch_size, first_sample,
                    local_batch)
  samples = _spec_dataset(steps, specs, local_batch).map(
      _patch_fn(reader, index, config.patch),
      num_parallel_calls=config.data.num_parallel_calls, deterministic=True)
  return _batched(samples, local_batch, config.data.prefetch)


def train_batches(config, *, start_step: int = 0, split: str = 'train',
                  process_index=None, process_count=None) -> feed.Batches:
  """Training batches for steps start_step, start_step + 1, ... (endless).

  Step t is a mask batch iff U(seed, t) > config.patch.hfreq, on every
  process. The local batch is config.batch_size // process_count (processes
  default to jax's); see `patch_dataset` for the keys. Fails before the first
  step if the split has nothing to draw them from; an error of a pipeline
  stage comes out of `next` as a feed.PipelineError naming the step.
  """
  builder = tfds_coco.prepare(config.data)
  steps = tf.data.Dataset.counter(start_step)
  batches = patch_dataset(config, builder, split, steps, seed=config.seed,
                          hfreq=config.patch.hfreq, process_index=process_index,
                          process_count=process_count).as_numpy_iterator()
  return feed.Batches(batches, f"training batches of dataset "
                      f"'{config.data.name}' ({split})", first=start_step + 1)


def validation_batch_count(config) -> int:
  """Batches of config.batch_size patches holding config.validation_images
  patches, rounded up to whole batches."""
  return -(-int(config.validation_images) // int(config.batch_size))


def eval_batches(config, *, split: str = 'val', num_batches=None,
                 process_index: int = 0, process_count: int = 1) -> feed.Batches:
  """evalPerPatch: `num_batches` (default `validation_batch_count`) mask batches.

  Jittered and flipped as in training, but drawn from EVAL_SEED, so every call
  (and every run) sees the same patches. Same keys as `train_batches`. By
  default each batch is the whole global batch (config.batch_size), which the
  trainer slices per process; pass process_index/process_count to get only a
  process's slice instead.
  """
  builder = tfds_coco.prepare(config.data)
  if num_batches is None:
    num_batches = validation_batch_count(config)
  steps = tf.data.Dataset.range(num_batches)
  batches = patch_dataset(config, builder, split, steps, seed=EVAL_SEED,
                          hfreq=0.0, process_index=process_index,
                          process_count=process_count).as_numpy_iterator()
  return feed.Batches(batches, f"per-patch evaluation batches of dataset "
                      f"'{config.data.name}' ({split})", endless=False,
                      unit='batch')
