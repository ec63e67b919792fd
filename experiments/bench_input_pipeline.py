"""Throughput of the patch input pipeline alone (no model), on coco_tiny.

  python experiments/bench_input_pipeline.py [--model=deepmask] [--seconds=8]

Builds coco_tiny (../shared/data/coco_tiny beside the repository) as TFDS in a
temporary folder (or --tfds_dir, reused when already built), then pulls
`train_batches` as fast as it can for mixed (hfreq 0.5), mask-only and
score-only streams. For each it prints patches per wall-second, how many CPU
cores the process kept busy (CPU seconds / wall seconds, all threads), and
patches per CPU-second, i.e. per fully used core.
"""

import os
import pathlib
import resource
import shutil
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# pylint: disable=g-import-not-at-top,wrong-import-position
from deepmask_jax import config_schema
from deepmask_jax.data import input_pipeline

_REPO = pathlib.Path(__file__).resolve().parents[1]
_MODEL = flags.DEFINE_enum('model', 'deepmask', ['deepmask', 'sharpmask'],
                           'deepmask: 112-px labels; sharpmask: 160-px labels.')
_SECONDS = flags.DEFINE_float('seconds', 8.0, 'Timed seconds per stream.')
_BATCH = flags.DEFINE_integer('batch_size', 32, 'Patches per batch.')
_DATA_ROOT = flags.DEFINE_string(
    'data_root', str(_REPO.parent / 'shared' / 'data' / 'coco_tiny'),
    'COCO-format dataset to sample from.')
_TFDS_DIR = flags.DEFINE_string('tfds_dir', '',
                                'Where to build the TFDS files (default: temp).')
_WARMUP_BATCHES = 3


def _cpu_seconds() -> float:
  usage = resource.getrusage(resource.RUSAGE_SELF)
  return usage.ru_utime + usage.ru_stime


def _config(tfds_dir: str, hfreq: float):
  config = config_schema.get_config()
  config.model = _MODEL.value
  config.batch_size = _BATCH.value
  config.patch.label_size = 160 if _MODEL.value == 'sharpmask' else 112
  config.patch.hfreq = hfreq
  config.data.name = 'coco_tiny'
  config.data.root = _DATA_ROOT.value
  config.data.tfds_dir = tfds_dir
  return config


def _measure(config) -> tuple[float, float, int]:
  """(wall seconds, CPU seconds, patches) over about --seconds of batches."""
  batches = input_pipeline.train_batches(config, process_index=0,
                                         process_count=1)
  for _ in range(_WARMUP_BATCHES):
    next(batches)
  start_wall, start_cpu, patches = time.perf_counter(), _cpu_seconds(), 0
  while time.perf_counter() - start_wall < _SECONDS.value:
    patches += len(next(batches)['score'])
  return time.perf_counter() - start_wall, _cpu_seconds() - start_cpu, patches


def main(argv):
  del argv
  tfds_dir = _TFDS_DIR.value or tempfile.mkdtemp(prefix='bench_tfds_')
  try:
    input_pipeline.tfds_coco.prepare(_config(tfds_dir, 0.5).data)
    _report(tfds_dir)
  finally:
    if not _TFDS_DIR.value:
      shutil.rmtree(tfds_dir)


def _report(tfds_dir: str) -> None:
  patch = _config(tfds_dir, 0.5).patch
  print(f'{_MODEL.value}: {patch.object_window + 2 * patch.context}-px patches, '
        f'{patch.label_size}-px labels, batch {_BATCH.value}, '
        f'{len(os.sched_getaffinity(0))} cores available, data {_DATA_ROOT.value}')
  print(f'{"stream":<10} {"patches/s":>10} {"cores busy":>11} '
        f'{"patches/CPU-s":>14}')
  for name, hfreq in (('mixed', 0.5), ('mask', 0.0), ('score', 1.0)):
    wall, cpu, patches = _measure(_config(tfds_dir, hfreq))
    print(f'{name:<10} {patches / wall:>10.1f} {cpu / wall:>11.2f} '
          f'{patches / cpu:>14.1f}', flush=True)


if __name__ == '__main__':
  app.run(main)
