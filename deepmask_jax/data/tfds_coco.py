"""A TFDS builder for any COCO-format instances dataset, with full-image masks.

TFDS's own `coco/2017` has no segmentation masks, so this builder reads the
instances json with `coco_json`, rasterises every annotation with pycocotools
and stores it as a lossless PNG beside the JPEG image. Files are written as
array_record, so the patch sampler can read examples by index:

  builder = prepare(config.data)
  source = builder.as_data_source('train', deserialize_method=RAW_BYTES)
  example = builder.info.features.deserialize_example(source[i])  # in tf.data

Each dataset is one BuilderConfig of the `deepmask_coco` builder, named by
`config.data.name`, so e.g. coco2017 and synthetic never share files. The
categories (id, name; label = index) are in `builder.info.metadata`.

A build prints its own lines on stdout (what is built where, then each
split's LoadReport, then the example counts), not TFDS's "Downloading and
preparing dataset" ones; TFDS's progress bars show only when stderr is a
terminal, where they are cleared before the reports are printed. TFDS writes
a build into TFDS_DIR/deepmask_coco/NAME/incomplete.*/ and renames it when
done; the folder a killed build left is removed (and named) by the next
`prepare`.
"""

import dataclasses
import io
import os
import shutil
import sys

from etils import epath
import jax
from jax.experimental import multihost_utils
import numpy as np
from PIL import Image
import tensorflow as tf
import tensorflow_datasets as tfds

from deepmask_jax.data import coco_images
from deepmask_jax.data import coco_json
from deepmask_jax.data import coco_masks
from deepmask_jax.data.coco_report import counted
from deepmask_jax.data import synthetic
from deepmask_jax.errors import DataError

RAW_BYTES = tfds.decode.DeserializeMethod.RAW_BYTES
SPLITS = ('train', 'val')

_LAYOUT_HELP = (
    'expected {expected} (COCO 2017: download from cocodataset.org as README, '
    '"Train on COCO", shows; your own data: --config.data.root and '
    '--config.data.{{train,val}}_{{json,images}}; the demo data: '
    '--config.data.synthetic=True)')


@dataclasses.dataclass
class CocoSourceConfig(tfds.core.BuilderConfig):
  """Where one COCO-format dataset lives (paths relative to root or absolute)."""
  root: str = ''
  train_json: str = ''
  train_images: str = ''
  val_json: str = ''
  val_images: str = ''

  def source_paths(self, split: str) -> tuple[str, str]:
    """(json path, image folder) of a split."""
    json_name, image_dir = {'train': (self.train_json, self.train_images),
                            'val': (self.val_json, self.val_images)}[split]
    return os.path.join(self.root, json_name), os.path.join(self.root, image_dir)


def features() -> tfds.features.FeaturesDict:
  """The example layout the patch sampler reads (masks at full image size)."""
  return tfds.features.FeaturesDict({
      'image': tfds.features.Image(shape=(None, None, 3), encoding_format='jpeg'),
      'image/id': tf.int64,
      'image/filename': tfds.features.Text(),
      'objects': tfds.features.Sequence({
          # Full image size, values 0/1; PNG keeps it lossless.
          'mask': tfds.features.Image(shape=(None, None, 1), encoding_format='png'),
          # COCO [x, y, w, h] in pixels.
          'bbox': tfds.features.Tensor(shape=(4,), dtype=tf.float32),
          'category_id': tf.int64,  # COCO id.
          'label': tf.int64,  # Contiguous 0..C-1.
          'iscrowd': tf.bool,
          'area': tf.float32,
          'id': tf.int64,
      }),
  })


def encode_mask_png(mask: np.ndarray) -> bytes:
  """uint8 (H, W) 0/1 mask -> 8-bit grayscale PNG bytes."""
  buffer = io.BytesIO()
  # Level 1: masks are mostly runs of zeros, and building speed matters more.
  Image.fromarray(mask).save(buffer, format='PNG', compress_level=1)
  return buffer.getvalue()


class DeepmaskCoco(tfds.core.GeneratorBasedBuilder):
  """COCO-format instances with full-image PNG masks; one config per dataset."""

  VERSION = tfds.core.Version('1.0.0')
  RELEASE_NOTES = {'1.0.0': 'Images, full-image masks, boxes, categories.'}

  # TFDS 4.9.10 finds a builder's source with `importlib_resources`, which it
  # only installs for Python < 3.9; naming the file here avoids that lookup.
  @tfds.core.utils.classproperty
  @classmethod
  def code_path(cls) -> epath.Path:
    return epath.Path(__file__)

  def __init__(self, **kwargs):
    super().__init__(**kwargs)
    # What was skipped or changed, per split; filled by a build in this process.
    self.load_reports: dict[str, coco_json.LoadReport] = {}

  def _info(self) -> tfds.core.DatasetInfo:
    return self.dataset_info_from_configs(
        features=features(),
        # Filled with the category list while building; saved with the data.
        metadata=tfds.core.MetadataDict(),
        homepage='https://cocodataset.org',
    )

  def _split_generators(self, dl_manager):
    del dl_manager  # Everything is local.
    loaded = {split: coco_json.load_instances(*self.builder_config.source_paths(split))
              for split in SPLITS}
    categories = _union_categories([split_categories for _, split_categories, _ in
                                    loaded.values()])
    self.info.metadata['categories'] = categories
    label_of = {category['id']: label for label, category in enumerate(categories)}
    generators = {}
    for split, (records, _, report) in loaded.items():
      for obj in (obj for record in records for obj in record.objects):
        obj.label = label_of[obj.category_id]  # Same labels in both splits.
      self.load_reports[split] = report
      generators[split] = self._generate_examples(records, report)
    return generators

  def _generate_examples(self, records, report):
    """Yields (image id, example); what it skips goes into `report`, which
    `prepare` prints once the build (and its progress bars) is done."""
    for record in records:
      jpeg = coco_images.read_image(record, report)
      if jpeg is None:
        continue
      yield record.id, {
          'image': jpeg,
          'image/id': record.id,
          'image/filename': record.file_name,
          'objects': [_encode_object(obj, record) for obj in record.objects],
      }

  # TFDS prints "Downloading and preparing dataset <size> ..." and "Dataset ...
  # downloaded and prepared ..." with termcolor, whatever its log level; a
  # local build says what it does in `_build`'s lines instead.
  def _log_download_bytes(self) -> None:
    pass

  def _log_download_done(self) -> None:
    pass


def _encode_object(obj: coco_json.ObjectRecord, record: coco_json.ImageRecord):
  mask = coco_masks.rasterize(obj.segmentation, record.height, record.width)
  return {
      'mask': encode_mask_png(mask),
      'bbox': np.asarray(obj.bbox, np.float32),
      'category_id': obj.category_id,
      'label': obj.label,
      'iscrowd': obj.iscrowd,
      'area': obj.area,
      'id': obj.id,
  }


def _union_categories(category_lists):
  """Union of the splits' categories, sorted by id; a clash of names fails."""
  by_id = {}
  for categories in category_lists:
    for category in categories:
      known = by_id.setdefault(category['id'], category)
      if known['name'] != category['name']:
        raise ValueError(f"category id {category['id']} is {known['name']!r} in one "
                         f"split and {category['name']!r} in the other")
  return [by_id[cid] for cid in sorted(by_id)]


def source_config(data_config) -> CocoSourceConfig:
  """The BuilderConfig for `config.data` (deepmask_jax/config_schema.py)."""
  return CocoSourceConfig(
      name=data_config.name,
      description=f'COCO-format instances from {data_config.root}',
      root=data_config.root,
      train_json=data_config.train_json,
      train_images=data_config.train_images,
      val_json=data_config.val_json,
      val_images=data_config.val_images,
  )


def check_source(config: CocoSourceConfig) -> None:
  """Raises DataError (one line: what is missing, the layout expected and how
  to get it) if the dataset's files are not there."""
  missing, expected = [], []
  for split in SPLITS:
    json_path, image_dir = config.source_paths(split)
    expected += [json_path, os.path.join(image_dir, '*.jpg')]
    if os.path.isdir(config.root):
      missing += [p for p, exists in ((json_path, os.path.isfile(json_path)),
                                      (image_dir, os.path.isdir(image_dir)))
                  if not exists]
  if not os.path.isdir(config.root):
    missing = [config.root]
  if missing:
    raise DataError(f"dataset '{config.name}' not found: missing "
                    f"{', '.join(missing)}; "
                    + _LAYOUT_HELP.format(expected=', '.join(expected)))


def tfds_dir(data_config) -> str:
  return data_config.tfds_dir or os.path.join(data_config.root, 'tfds')


def make_builder(data_config) -> DeepmaskCoco:
  """The builder for `config.data`, without building anything."""
  return DeepmaskCoco(config=source_config(data_config), data_dir=tfds_dir(data_config),
                      file_format='array_record')


def prepare(data_config) -> tfds.core.DatasetBuilder:
  """Builds the TFDS dataset for `config.data` once and returns its builder.

  With `data_config.synthetic`, the synthetic dataset is generated into
  `data_config.root` first if absent (and config.data's paths point at it).
  A dataset already built under `tfds_dir` is reused as it is (delete its
  folder to rebuild after changing the json or images). With several
  processes (`--multihost`, a filesystem they share), process 0 generates and
  builds while the others wait, so no two processes write the same files.
  """
  builder = None
  if jax.process_index() == 0:
    synthetic.ensure_synthetic(data_config)
    builder = make_builder(data_config)
    _remove_interrupted_builds(builder)
    if not builder.is_prepared():
      check_source(builder.builder_config)
      _build(builder)
  if jax.process_count() > 1:
    multihost_utils.sync_global_devices(f'prepare {tfds_dir(data_config)}')
  if builder is None:  # Built by process 0.
    builder = make_builder(synthetic.ensure_synthetic(data_config))
  return builder


def _build(builder: DeepmaskCoco) -> None:
  """Builds the dataset's files, saying so in lines of its own (module doc)."""
  name = builder.builder_config.name
  print(f"building the TFDS files of dataset '{name}' in {builder.data_dir} "
        '(once: later runs reuse them)', flush=True)
  # In a log, a progress bar is a line of redraws and cursor moves.
  tfds.display_progress_bar(sys.stderr.isatty())
  builder.download_and_prepare(
      download_config=tfds.download.DownloadConfig(try_download_gcs=False))
  for split in SPLITS:
    print(builder.load_reports[split].summary(), flush=True)
  sizes = ', '.join(f"{counted(builder.info.splits[split].num_examples, 'image')} "
                    f'in {split}' for split in SPLITS)
  print(f"dataset '{name}' built: {sizes}", flush=True)


def _remove_interrupted_builds(builder: DeepmaskCoco) -> None:
  """Removes the folders killed builds of this dataset left, one line each.

  TFDS removes its temporary folder when a build fails with an exception, not
  when the process is killed. Two builds of one dataset at a time are not
  supported (the second would fail at TFDS's final rename anyway).
  """
  parent = os.path.dirname(builder.data_dir)  # TFDS_DIR/deepmask_coco/NAME
  if not os.path.isdir(parent):
    return
  for name in sorted(os.listdir(parent)):
    path = os.path.join(parent, name)
    if name.startswith(tfds.core.constants.INCOMPLETE_PREFIX) and os.path.isdir(path):
      print(f'removing {path} ({_megabytes(path):.1f} MB), left by an '
            'interrupted TFDS build', flush=True)
      shutil.rmtree(path)


def _megabytes(folder: str) -> float:
  return sum(os.path.getsize(os.path.join(root, f))
             for root, _, files in os.walk(folder) for f in files) / 1e6


def categories(builder: tfds.core.DatasetBuilder) -> list[dict]:
  """[{'id', 'name'}] sorted by id; an object's `label` indexes this list."""
  return list(builder.info.metadata['categories'])
