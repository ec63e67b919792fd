"""Throughput of the patch input pipeline alone (no model), on coco_tiny.

  python experiments/bench_input_pipeline.py [--model=deepmask] [--seconds=8]
      [--cores=1,2] [--target=3000] [--json=OUT]

Builds coco_tiny (../shared/data/coco_tiny beside the repository) as TFDS in a
temporary folder (or --tfds_dir, reused when already built), then pulls
`train_batches` as fast as it can for mixed (hfreq 0.5), mask-only and
score-only streams. For each it prints patches per wall-second, how many CPU
cores the process kept busy (CPU seconds / wall seconds, all threads), and
patches per CPU-second, i.e. per fully used core.

With --cores (default 1,2) each count runs in its own subprocess pinned to
that many cores (os.sched_setaffinity before the child starts, so
TensorFlow sizes its thread pools, and tf.data's AUTOTUNE its parallelism, to
them). The summary gives the mixed stream's patches/s per core (wall) and
per CPU-second at each count, and the cores --target patches/s (a GPU's
training rate) needs at the largest count's rates, assuming linear scaling.
--cores= (empty) measures in this process, on every core it may use.
"""

import json
import math
import os
import pathlib
import resource
import shutil
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

# pylint: disable=g-import-not-at-top,wrong-import-position
from deepmask_jax import config_schema
from deepmask_jax.families.deepmask import input_pipeline

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
_CORES = flags.DEFINE_list('cores', ['1', '2'], 'Core counts to pin '
                           'subprocesses to (counts above those available '
                           'are skipped); empty: measure in this process.')
_TARGET = flags.DEFINE_float('target', 3000.0, 'patches/s to size cores for.')
_JSON = flags.DEFINE_string('json', '', 'Write the figures here as JSON.')
_WARMUP_BATCHES = 3
STREAMS = (('mixed', 0.5), ('mask', 0.0), ('score', 1.0))


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
    if _CORES.value:
      figures = _sweep_cores(tfds_dir)
    else:
      figures = _report(tfds_dir)
    if _JSON.value:
      pathlib.Path(_JSON.value).write_text(json.dumps(figures, indent=1))
  finally:
    if not _TFDS_DIR.value:
      shutil.rmtree(tfds_dir)


def _report(tfds_dir: str) -> dict:
  """Measures every stream in this process; prints and returns the figures."""
  patch = _config(tfds_dir, 0.5).patch
  cores = len(os.sched_getaffinity(0))
  print(f'{_MODEL.value}: {patch.object_window + 2 * patch.context}-px patches, '
        f'{patch.label_size}-px labels, batch {_BATCH.value}, '
        f'{cores} cores available, data {_DATA_ROOT.value}')
  print(f'{"stream":<10} {"patches/s":>10} {"cores busy":>11} '
        f'{"patches/CPU-s":>14}')
  figures = {'cores': cores, 'streams': {}}
  for name, hfreq in STREAMS:
    wall, cpu, patches = _measure(_config(tfds_dir, hfreq))
    print(f'{name:<10} {patches / wall:>10.1f} {cpu / wall:>11.2f} '
          f'{patches / cpu:>14.1f}', flush=True)
    figures['streams'][name] = {'patches_per_s': patches / wall,
                                'cores_busy': cpu / wall,
                                'patches_per_cpu_s': patches / cpu}
  return figures


def _pinned_run(cores: list[int], tfds_dir: str) -> dict:
  """This script, pinned to `cores`, measuring in-process; its figures."""
  with tempfile.NamedTemporaryFile(suffix='.json') as out:
    command = [sys.executable, __file__, '--cores=', f'--json={out.name}',
               f'--tfds_dir={tfds_dir}', f'--model={_MODEL.value}',
               f'--seconds={_SECONDS.value}', f'--batch_size={_BATCH.value}',
               f'--data_root={_DATA_ROOT.value}']
    # Pin, then exec: affinity is inherited and TensorFlow reads it at start
    # (a preexec_fn would run Python after fork in a threaded process).
    pin = ('import os, sys; os.sched_setaffinity(0, %r); '
           'os.execv(sys.executable, sys.argv[1:])' % (set(cores),))
    subprocess.run([sys.executable, '-c', pin] + command, check=True)
    return json.loads(pathlib.Path(out.name).read_text())


def _sweep_cores(tfds_dir: str) -> dict:
  """Per-core figures at each --cores count, each in a pinned subprocess."""
  available = sorted(os.sched_getaffinity(0))
  counts = [int(c) for c in _CORES.value]
  skipped = [c for c in counts if c > len(available)]
  if skipped:
    print(f'skipping core counts {skipped}: only {len(available)} available')
  runs = {}
  for count in (c for c in counts if c <= len(available)):
    print(f'--- pinned to {count} core(s): {available[:count]}', flush=True)
    runs[count] = _pinned_run(available[:count], tfds_dir)
  print(f'mixed stream (hfreq 0.5), {_MODEL.value}:')
  print(f'{"cores":>5} {"patches/s":>10} {"per core":>9} {"cores busy":>11} '
        f'{"patches/CPU-s":>14}')
  per_core, per_cpu_s = {}, {}
  for count, run in runs.items():
    mixed = run['streams']['mixed']
    per_core[count] = mixed['patches_per_s'] / count
    per_cpu_s[count] = mixed['patches_per_cpu_s']
    print(f'{count:>5} {mixed["patches_per_s"]:>10.1f} {per_core[count]:>9.1f} '
          f'{mixed["cores_busy"]:>11.2f} {per_cpu_s[count]:>14.1f}')
  figures = {'model': _MODEL.value, 'batch': _BATCH.value,
             'runs': {str(c): r for c, r in runs.items()},
             'patches_per_s_per_core': {str(c): v for c, v in per_core.items()},
             'patches_per_cpu_s': {str(c): v for c, v in per_cpu_s.items()},
             'target_patches_per_s': _TARGET.value}
  if runs:
    # Wall rate per pinned core counts idle and stolen time (a shared machine
    # lowers it); CPU-seconds count only the work, i.e. fully used cores.
    largest = max(runs)
    figures['cores_for_target'] = math.ceil(_TARGET.value / per_cpu_s[largest])
    figures['cores_for_target_wall'] = math.ceil(_TARGET.value
                                                 / per_core[largest])
    print(f'{_TARGET.value:.0f} patches/s needs about '
          f'{figures["cores_for_target"]} fully used cores '
          f'({per_cpu_s[largest]:.1f} patches/CPU-s at {largest} cores), '
          f'{figures["cores_for_target_wall"]} at the wall rate per core '
          f'({per_core[largest]:.1f}); linear scaling assumed')
  return figures


if __name__ == '__main__':
  app.run(main)
