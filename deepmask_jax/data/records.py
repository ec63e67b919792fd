"""Records of a TFDS split read by index, and the split's cached object index.

Every family's input pipeline reads its samples through `RecordReader` (JPEG
and PNG bytes left encoded) and draws them from `load_object_index`;
`process_slice` gives a process its part of a global batch.
"""

import dataclasses
import os

import jax
import numpy as np
import tensorflow as tf
import tensorflow_datasets as tfds

from deepmask_jax.data import tfds_coco
from deepmask_jax.data.object_index import ObjectIndex

_INDEX_FORMAT = 1
_SKIP_PIXELS = {'image': tfds.decode.SkipDecoding(),
                'objects': {'mask': tfds.decode.SkipDecoding()}}


class RecordReader:
  """Reads records of one split by index, inside TF graphs.

  `read(i)` returns the parsed example with the image and masks still encoded
  (`image`: JPEG bytes, `objects/mask`: PNG bytes per object).
  """

  def __init__(self, builder, split: str):
    self._source = builder.as_data_source(
        split, deserialize_method=tfds_coco.RAW_BYTES)
    self._features = builder.info.features

  def __len__(self) -> int:
    return len(self._source)

  def _fetch(self, image_index) -> bytes:
    return self._source[int(image_index)]

  def read(self, image_index: tf.Tensor) -> dict:
    raw = tf.numpy_function(self._fetch, [image_index], tf.string,
                            stateful=False)
    raw = tf.ensure_shape(raw, ())
    return self._features.deserialize_example(raw, decoders=_SKIP_PIXELS)


def _index_path(builder, split: str) -> str:
  return os.path.join(str(builder.data_dir), f'deepmask_object_index-{split}.npz')


def _scan_split(reader: RecordReader) -> ObjectIndex:
  """Reads every record's boxes, labels and image size (no pixel decoding)."""
  def summary(image_index):
    example = reader.read(image_index)
    objects = example['objects']
    return {'image_id': example['image/id'],
            'image_size': tf.io.extract_jpeg_shape(example['image'])[:2],
            'label': objects['label'], 'bbox': objects['bbox'],
            'area': objects['area'], 'iscrowd': objects['iscrowd']}

  records = tf.data.Dataset.range(len(reader)).map(
      summary, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
  rows = list(records.as_numpy_iterator())
  counts = np.array([len(row['label']) for row in rows], np.int64)

  def objects(key, dtype, shape=()):
    parts = [np.reshape(row[key], (-1,) + shape) for row in rows]
    return np.concatenate(parts + [np.zeros((0,) + shape)]).astype(dtype)

  return ObjectIndex(
      image_id=np.array([row['image_id'] for row in rows], np.int64),
      image_size=np.array([row['image_size'] for row in rows],
                          np.int32).reshape(-1, 2),
      first_object=np.concatenate([[0], np.cumsum(counts)]).astype(np.int64),
      object_slot=np.concatenate([np.arange(n) for n in counts] + [[]]).astype(
          np.int32),
      label=objects('label', np.int32),
      bbox=objects('bbox', np.float32, (4,)),
      area=objects('area', np.float32),
      iscrowd=objects('iscrowd', bool))


def load_object_index(builder, split: str) -> ObjectIndex:
  """The split's ObjectIndex, cached as .npz next to the TFDS files.

  The cache sits in the builder's version folder, so rebuilding the dataset
  (which replaces that folder) drops it; it is also rebuilt when its format or
  record count does not match. It is written under a temporary name and
  renamed, so processes building it at the same time never read a partial
  file.
  """
  path = _index_path(builder, split)
  expected_images = builder.info.splits[split].num_examples
  if os.path.exists(path):
    with np.load(path) as cached:
      if (int(cached['format']) == _INDEX_FORMAT
          and len(cached['image_id']) == expected_images):
        return ObjectIndex(**{
            field.name: cached[field.name]
            for field in dataclasses.fields(ObjectIndex)})
  index = _scan_split(RecordReader(builder, split))
  staging = f'{path}.{os.getpid()}.tmp.npz'
  np.savez(staging, format=_INDEX_FORMAT, **vars(index))
  os.replace(staging, path)
  return index


def process_slice(batch_size: int, process_index, process_count):
  """(first sample of this process within a global batch, local batch)."""
  process_index = jax.process_index() if process_index is None else process_index
  process_count = jax.process_count() if process_count is None else process_count
  if batch_size % process_count:
    raise ValueError(f'batch_size {batch_size} is not divisible by the '
                     f'{process_count} processes')
  local_batch = batch_size // process_count
  return process_index * local_batch, local_batch
