r"""Training throughput (patches/s) of the jitted data-parallel step, in-memory batches.

  python experiments/bench_train.py --config=configs/deepmask.py [--steps=10]
  python experiments/bench_train.py --config=configs/demo.py --steps=50

Feeds random batches shaped like the input pipeline's (no TensorFlow, so it
runs on the device machine too), alternating mask and score batches as
`patch.hfreq` draws them, over all local devices. Measures each compute dtype
of --dtypes (float32 and bfloat16 by default; `config.dtype` is ignored) in
one run and prints, per dtype, compile time and steady-state patches/s
overall and per head, then the bf16/float32 speed ratio. Any other config
field can be overridden: --config.batch_size=64. --conv_forms=cpu traces the
convs in the CPU's speed forms on any backend (models/convolution.py), to
time them against XLA's own conv on a GPU.
"""

import time

from absl import app, flags
import jax
import numpy as np
from ml_collections import config_flags

from deepmask_jax.families import bind
from deepmask_jax.families.deepmask.patch_geometry import patch_side
from deepmask_jax.models import backend_forms
from deepmask_jax.train.trainer import setup

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.')
flags.DEFINE_integer('steps', 10, 'Timed steps (after one warm-up per head).')
flags.DEFINE_list('dtypes', ['float32', 'bfloat16'], 'Compute dtypes to time.')
flags.DEFINE_enum('conv_forms', 'backend', ['backend', 'cpu'],
                  "Conv forms: the running backend's, or the CPU's.")
flags.mark_flags_as_required(['config'])


def random_batch(config, head: str, rng: np.random.Generator) -> dict:
  side = patch_side(config)
  label = config.patch.label_size
  n = config.batch_size
  return {'image': rng.normal(size=(n, side, side, 3)).astype(np.float32),
          'mask': np.sign(rng.normal(size=(n, label, label))).astype(np.float32),
          'score': np.sign(rng.normal(size=n)).astype(np.float32),
          'is_mask': np.bool_(head == 'mask')}


def measure(config, steps: int) -> dict:
  """{'compile_s', 'per_head': {head: patches/s}, 'mixed': patches/s}."""
  _, runner, state = setup(bind(config))
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
    for _ in range(steps):
      state, metrics = runner.step(state, batches[head], head)
    jax.block_until_ready(metrics)
    seconds[head] = time.perf_counter() - started
  patches = steps * config.batch_size
  per_head = {h: patches / s for h, s in seconds.items()}
  # The training mix: a fraction hfreq of score batches.
  mix = {'mask': 1 - config.patch.hfreq, 'score': config.patch.hfreq}
  mixed = 1 / sum(mix[h] / per_head[h] for h in heads)
  return {'compile_s': compile_s, 'per_head': per_head, 'mixed': mixed}


def main(argv):
  del argv
  config = FLAGS.config
  if config.model == 'sharpmask':
    raise app.UsageError('benchmark DeepMask configs (SharpMask needs a '
                         'trained DeepMask checkpoint)')
  forms = (jax.default_backend() if FLAGS.conv_forms == 'backend'
           else FLAGS.conv_forms)
  print(f'device: {jax.devices()[0].device_kind} x {jax.device_count()} '
        f'({jax.default_backend()}), conv forms of {forms}')
  print(f'model: {config.model}, trunk widths {tuple(config.trunk.widths)} '
        f'depths {tuple(config.trunk.depths)}, patch '
        f'{patch_side(config)} px, batch {config.batch_size}, '
        f'{config.parallel}, {FLAGS.steps} timed steps per head')
  rates = {}
  for dtype in FLAGS.dtypes:
    config.dtype = dtype
    with backend_forms.forms_of(forms):  # The step is traced in measure.
      figures = measure(config, FLAGS.steps)
    rates[dtype] = figures['mixed']
    heads = ', '.join(f'{head} batches {rate:.1f}'
                      for head, rate in figures['per_head'].items())
    print(f'{dtype}: compile + first steps {figures["compile_s"]:.1f} s; '
          f'{heads}; training mix (hfreq {config.patch.hfreq}) '
          f'{figures["mixed"]:.1f} patches/s', flush=True)
  if {'float32', 'bfloat16'} <= set(rates):
    print(f'bfloat16 / float32 speed: {rates["bfloat16"] / rates["float32"]:.2f}x')


if __name__ == '__main__':
  app.run(main)
