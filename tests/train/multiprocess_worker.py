"""One process of a (multi-process) demo run: train a few steps, then evaluate.

python -m tests.train.multiprocess_worker WORKDIR DATA_ROOT TFDS_DIR OUT_JSON

Runs `run.run` as `python -m deepmask_jax.main` would, on a tiny variant of
configs/demo.py: train, train again (a finished run: it resumes from the
last checkpoint and takes no step), then `mode=eval` on the checkpoint. With
JAX_NUM_PROCESSES > 1 in the environment it joins the distributed runtime
(`multihost=True`; JAX_COORDINATOR_ADDRESS / JAX_PROCESS_ID say where and
who). Writes {'process_index', 'process_count', 'devices', 'validation',
'resumed', 'evaluation', 'cpu_seconds'} to OUT_JSON. The number of CPU devices comes from XLA_FLAGS,
set by the caller.
"""

import json
import os
import resource
import sys

os.environ.setdefault('JAX_PLATFORMS', 'cpu')

import jax  # pylint: disable=wrong-import-position

from deepmask_jax import run  # pylint: disable=wrong-import-position
from tests.conftest import with_overrides  # pylint: disable=wrong-import-position

STEPS = 4


def tiny_demo_config(data_root: str, tfds_dir: str):
  """configs/demo.py with a tiny network, small patches and 4 steps."""
  from configs import demo  # pylint: disable=import-outside-toplevel
  return with_overrides(demo.get_config(), {
      'trunk.stem_width': 8, 'trunk.widths': (4, 8, 8), 'trunk.depths': (1, 1, 1),
      'head.feature_channels': 8, 'head.embedding': 16, 'head.score_hidden': 16,
      'patch.hfreq': 0.0,  # Mask steps only: one step function to compile.
      'inference.scale_min': 0.0, 'inference.scale_max': 0.0,  # One scale.
      'patch.object_window': 64, 'patch.label_size': 32, 'patch.shift': 8,
      'data.root': data_root, 'data.tfds_dir': tfds_dir,
      'data.synthetic_train_images': 24, 'data.synthetic_val_images': 12,
      'data.synthetic_image_size': 96,
      'batch_size': 8, 'schedule.total_steps': STEPS,
      'eval_every_steps': STEPS, 'checkpoint_every_steps': 2,
      'log_every_steps': 2, 'validation_images': 8,
      'evaluation.results_per_image': 10, 'evaluation.max_images': 4})


def main(workdir: str, data_root: str, tfds_dir: str, out_json: str) -> None:
  multihost = int(os.environ.get('JAX_NUM_PROCESSES', '1')) > 1
  config = tiny_demo_config(data_root, tfds_dir)
  validation = run.run(config, workdir, multihost=multihost)
  resumed = run.run(config, workdir)  # Finished: resumes, takes no step.
  config.mode = 'eval'
  evaluation = run.run(config, workdir)
  with open(out_json, 'w') as f:
    json.dump({'process_index': jax.process_index(),
               'process_count': jax.process_count(),
               'devices': jax.device_count(),
               'validation': validation, 'resumed': resumed,
               'evaluation': evaluation,
               'cpu_seconds': resource.getrusage(resource.RUSAGE_SELF).ru_utime
               }, f,
              default=str)


if __name__ == '__main__':
  main(*sys.argv[1:])
