r"""Training throughput (patches/s) of the jitted data-parallel step, in-memory batches.

  python experiments/bench_train.py --config=configs/deepmask.py [--steps=10]
  python experiments/bench_train.py --config=configs/demo.py --steps=50

Feeds random batches shaped like the input pipeline's (no TensorFlow, so it
runs on the device machine too), alternating mask and score batches as
`patch.hfreq` draws them, over all local devices. Prints compile time,
steady-state patches/s overall and per head, and the device. Any config
field can be overridden: --config.batch_size=64 --config.dtype=bfloat16.
"""

import time

from absl import app, flags
import jax
import numpy as np
from ml_collections import config_flags

from deepmask_jax.families import get_family
from deepmask_jax.models.patch_geometry import patch_side
from deepmask_jax.train.trainer import setup

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.')
flags.DEFINE_integer('steps', 10, 'Timed steps (after one warm-up per head).')
flags.mark_flags_as_required(['config'])


def random_batch(config, head: str, rng: np.random.Generator) -> dict:
  side = patch_side(config)
  label = config.patch.label_size
  n = config.batch_size
  return {'image': rng.normal(size=(n, side, side, 3)).astype(np.float32),
          'mask': np.sign(rng.normal(size=(n, label, label))).astype(np.float32),
          'score': np.sign(rng.normal(size=n)).astype(np.float32),
          'is_mask': np.bool_(head == 'mask')}


def main(argv):
  del argv
  config = FLAGS.config
  if config.model == 'sharpmask':
    raise app.UsageError('benchmark DeepMask configs (SharpMask needs a '
                         'trained DeepMask checkpoint)')
  _, runner, state = setup(config, get_family(config.model))
  state = runner.replicate(state)
  rng = np.random.default_rng(0)
  heads = ['mask', 'score'] if config.patch.hfreq > 0 else ['mask']
  batches = {h: random_batch(config, h, rng) for h in heads}
  started = time.perf_counter()
  for head in heads:
    state, metrics = runner.step(state, batches[head], head)
  jax.block_until_ready(metrics)
  compile_s = time.perf_counter() - started
  seconds = {}
  for head in heads:
    started = time.perf_counter()
    for _ in range(FLAGS.steps):
      state, metrics = runner.step(state, batches[head], head)
    jax.block_until_ready(metrics)
    seconds[head] = time.perf_counter() - started
  patches = FLAGS.steps * config.batch_size
  per_head = {h: patches / s for h, s in seconds.items()}
  # The training mix: a fraction hfreq of score batches.
  mix = {'mask': 1 - config.patch.hfreq, 'score': config.patch.hfreq}
  mixed = 1 / sum(mix[h] / per_head[h] for h in heads)
  print(f'device: {jax.devices()[0].device_kind} x {jax.device_count()} '
        f'({jax.default_backend()})')
  print(f'model: {config.model}, trunk widths {tuple(config.trunk.widths)} '
        f'depths {tuple(config.trunk.depths)}, patch '
        f'{patch_side(config)} px, batch '
        f'{config.batch_size}, dtype {config.dtype}, {config.parallel}')
  print(f'compile + first steps: {compile_s:.1f} s')
  for head, rate in per_head.items():
    print(f'{head} batches: {rate:.1f} patches/s')
  print(f'training mix (hfreq {config.patch.hfreq}): {mixed:.1f} patches/s')


if __name__ == '__main__':
  app.run(main)
