r"""DeepMask and SharpMask in JAX and in PyTorch, side by side, in one run.

  python experiments/bench_vs_pytorch.py [--model_dir=DIR] [--small]
      [--height=480 --width=640] [--batch=32] [--device=auto] [--json=OUT]

PyTorch is a benchmark-only dependency (never imported by the package or its
tests); install it beside the project, e.g. in a venv with
--system-site-packages. Without it the script says so and exits 0 (writing
{"skipped": ...} to --json), so experiments/device_check.sh can call it on a
machine without torch.

Both frameworks run the same network with the same weights: those of
--model_dir (a DeepMask or SharpMask model directory or training workdir),
or, by default, a random full-size ResNet-50 SharpMask (random frozen
affines too, so they are checked) written with models/store.py to a
temporary model directory and read back from it. --small swaps in a tiny
trunk. Then, for each of DeepMask and SharpMask:

  1. equality: the patch form (mask, score), the dense form on a canvas, and
     the first training loss agree to --tolerance (max |jax - torch| over
     max |torch|);
  2. forward: the dense multi-scale pass of one --height x --width image: the
     pyramid canvases of families/deepmask/pyramid.py (default scales, 128-px buckets),
     one network call per canvas shape, computing what inference's per-level
     call computes (score map and embeddings; SharpMask also its four
     whole-map skip features); plus decoding --windows windows (DeepMask's
     mask head, SharpMask's refinement);
  3. training step: forward, backward and SGD (the config's momentum and
     weight decay) on a mask batch of --batch patches (wSz = 192 px): DeepMask
     updates trunk and mask head, SharpMask its refinement over the frozen
     DeepMask. JAX runs the project's own step (train/train_step.py).

Times are medians of --repeats after a warm-up (compilation excluded) and
include the host-to-device copy of the input. Printed: each time, JAX/PyTorch
ratio and speedup. Thread counts: JAX's CPU backend uses every core it may run
on; torch.set_num_threads gets the same number (--threads overrides).
"""

import json
import os
import pathlib
import sys
import tempfile

from absl import app, flags
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

# pylint: disable=g-import-not-at-top,wrong-import-position
from deepmask_jax import config_schema
from deepmask_jax.families import get_family
from deepmask_jax.families.deepmask.defaults import inference_config
from deepmask_jax.families.deepmask.pyramid import (build_canvas, plan_levels,
                                            pyramid_scales)
from deepmask_jax.families.deepmask.model import deepmask_from_config
from deepmask_jax.families.deepmask.patch_geometry import patch_side
from deepmask_jax.families.deepmask.refinement import SharpMask
from deepmask_jax.models.store import load_model, save_model
from deepmask_jax.train.initialization import fresh_variables
from deepmask_jax.train.parallel import DataParallel
from deepmask_jax.train.train_step import create_train_state, make_step_fns
from optional_torch import torch_or_skip  # Beside this file.

_MODEL_DIR = flags.DEFINE_string('model_dir', '', 'Model directory or workdir '
                                 '(default: a random full-size SharpMask).')
_SMALL = flags.DEFINE_bool('small', False, 'Random model with a tiny trunk.')
_MODELS = flags.DEFINE_list('models', ['deepmask', 'sharpmask'],
                            'Which networks to compare.')
_HEIGHT = flags.DEFINE_integer('height', 480, 'Image height (pixels).')
_WIDTH = flags.DEFINE_integer('width', 640, 'Image width (pixels).')
_BATCH = flags.DEFINE_integer('batch', 32, 'Training patches per step.')
_WINDOWS = flags.DEFINE_integer('windows', 128, 'Windows decoded per call.')
_REPEATS = flags.DEFINE_integer('repeats', 3, 'Timed repetitions (median).')
_DEVICE = flags.DEFINE_enum('device', 'auto', ['auto', 'cpu', 'cuda'],
                            'Torch device; auto: cuda if JAX runs on a GPU.')
_THREADS = flags.DEFINE_integer('threads', 0, 'torch.set_num_threads '
                                '(default: the cores this process may use).')
_TOLERANCE = flags.DEFINE_float('tolerance', 1e-3, 'Relative output agreement.')
_JSON = flags.DEFINE_string('json', '', 'Write the figures here as JSON.')


def _small(config):
  config.trunk.stem_width, config.trunk.widths = 8, (8, 16, 16)
  config.trunk.depths = (1, 1, 1)
  config.head.feature_channels, config.head.embedding = 16, 32
  config.head.score_hidden = 32
  return config


def _random_model_dir(directory: str) -> str:
  """Writes a random SharpMask (random frozen affines too) as a model dir."""
  config = config_schema.get_config()
  if _SMALL.value:
    config = _small(config)
  config.model = 'sharpmask'
  model = SharpMask(deepmask_from_config(config), km=config.refine.km)
  side = patch_side(config)
  variables = fresh_variables(model, 0, (1, side, side, 3))
  rng = np.random.default_rng(0)
  constants = jax.tree_util.tree_map_with_path(
      lambda path, v: (rng.uniform(0.5, 1.5, v.shape) if path[-1].key == 'scale'
                       else rng.normal(0, 0.1, v.shape)).astype(np.float32),
      jax.device_get(variables['constants']))
  path = os.path.join(directory, 'model')
  save_model(path, {'params': variables['params'], 'constants': constants},
             config)
  return path


def _jax_models(config):
  """(deepmask, sharpmask-or-None) Flax modules of the loaded config."""
  deepmask = deepmask_from_config(config)
  sharpmask = (SharpMask(deepmask, km=config.refine.km)
               if config.model == 'sharpmask' else None)
  return deepmask, sharpmask


def _deepmask_variables(variables: dict) -> dict:
  if 'deepmask' not in variables['params']:
    return variables
  return {c: tree['deepmask'] for c, tree in variables.items()}


def _pyramid(config, rng) -> list[np.ndarray]:
  """Normalised canvases [B, H, W, 3] of one image, one array per shape."""
  inference = inference_config(config)
  image = rng.uniform(0, 1, (_HEIGHT.value, _WIDTH.value, 3)).astype(np.float32)
  border = config.patch.object_window // 2
  levels = plan_levels(_HEIGHT.value, _WIDTH.value, pyramid_scales(inference),
                       border, config.patch.object_window // 16,
                       inference.bucket_multiple)
  by_shape = {}
  for level in levels:
    by_shape.setdefault(level.canvas, []).append(
        build_canvas(image, level, border))
  mean = np.asarray(config.patch.mean, np.float32)
  std = np.asarray(config.patch.std, np.float32)
  return [(np.stack(c) - mean) / std for c in by_shape.values()]


def _patch_batch(config, label: int, rng) -> dict:
  side = patch_side(config)
  n = _BATCH.value
  return {'image': rng.normal(size=(n, side, side, 3)).astype(np.float32),
          'mask': np.sign(rng.normal(size=(n, label, label))).astype(np.float32),
          'is_mask': np.bool_(True)}


def main(argv):
  del argv
  torch = torch_or_skip('bench_vs_pytorch', _JSON.value)
  if torch is None:
    return
  import torch_bench  # pylint: disable=import-outside-toplevel
  device = _DEVICE.value
  if device == 'auto':
    device = 'cuda' if (jax.default_backend() == 'gpu'
                        and torch.cuda.is_available()) else 'cpu'
  threads = _THREADS.value or len(os.sched_getaffinity(0))
  torch.set_num_threads(threads)
  with tempfile.TemporaryDirectory() as scratch:
    model_dir = _MODEL_DIR.value or _random_model_dir(scratch)
    variables, config = load_model(model_dir)
  bench = torch_bench.SideBySide(device, variables, config, _REPEATS.value)
  header = {
      'jax_backend': jax.default_backend(),
      'jax_device': jax.devices()[0].device_kind,
      'torch_device': device, 'torch_version': torch.__version__,
      'jax_version': jax.__version__, 'torch_threads': threads,
      'cores_available': len(os.sched_getaffinity(0)),
      'model_dir': _MODEL_DIR.value or '(random, temporary)',
      'trunk': {'widths': list(config.trunk.widths),
                'depths': list(config.trunk.depths)},
      'image': [_HEIGHT.value, _WIDTH.value], 'batch': _BATCH.value,
      'windows': _WINDOWS.value, 'repeats': _REPEATS.value}
  print(' '.join(f'{k}={v}' for k, v in header.items()), flush=True)
  rng = np.random.default_rng(1)
  canvases = _pyramid(config, rng)
  print('pyramid canvases (B, H, W): '
        + ', '.join(str(c.shape[:3]) for c in canvases), flush=True)
  figures = dict(header, canvases=[list(c.shape[:3]) for c in canvases])
  deepmask, sharpmask = _jax_models(config)
  for name in _MODELS.value:
    if name == 'sharpmask' and sharpmask is None:
      print('sharpmask: skipped (the model directory holds a DeepMask)')
      continue
    model = sharpmask if name == 'sharpmask' else deepmask
    model_vars = variables if name == 'sharpmask' else _deepmask_variables(
        variables)
    figures[name] = _compare(bench, name, model, model_vars, config, canvases,
                             rng)
  if _JSON.value:
    pathlib.Path(_JSON.value).write_text(json.dumps(figures, indent=1))
    print(f'figures written to {_JSON.value}')
  failed = [n for n in _MODELS.value
            if n in figures and not figures[n]['outputs_agree']]
  if failed:
    raise SystemExit(f'outputs differ beyond {_TOLERANCE.value} for {failed}')


def _compare(bench, name, model, variables, config, canvases, rng) -> dict:
  """Equality and timings of one network; prints and returns the figures."""
  sharp = name == 'sharpmask'
  errors = bench.check_outputs(name, model, variables,
                               patches=_patch_batch(config, 1, rng)['image'][:2],
                               canvas=canvases[0][:1])
  timings = {
      'forward': bench.time_forward(name, model, variables, canvases),
      'decode': bench.time_decode(name, model, variables, _WINDOWS.value),
  }
  train_config = _train_config(config, name)
  label = config.patch.object_window if sharp else config.patch.label_size
  batch = _patch_batch(train_config, label, rng)
  step, loss_error = bench.time_train_step(
      name, _jax_runner(train_config, model, name, variables), batch,
      train_config)
  timings['train_step'] = step
  errors['train_loss'] = loss_error
  agree = all(e <= _TOLERANCE.value for e in errors.values())
  print(f'{name}: relative output errors '
        + ', '.join(f'{k} {v:.1e}' for k, v in errors.items())
        + (' (agree)' if agree else f' (EXCEED {_TOLERANCE.value})'))
  print(f'{"":<4}{"what":<12} {"jax s":>9} {"torch s":>9} {"jax/torch":>10} '
        f'{"speedup":>8}')
  for what, (jax_s, torch_s) in timings.items():
    print(f'{"":<4}{what:<12} {jax_s:>9.4f} {torch_s:>9.4f} '
          f'{jax_s / torch_s:>10.3f} {torch_s / jax_s:>7.2f}x', flush=True)
  return {'outputs_agree': agree, 'relative_errors': errors,
          'seconds': {k: {'jax': j, 'torch': t, 'jax_over_torch': j / t,
                          'speedup': t / j}
                      for k, (j, t) in timings.items()},
          'train_patches_per_s': {
              'jax': _BATCH.value / timings['train_step'][0],
              'torch': _BATCH.value / timings['train_step'][1]}}


def _train_config(config, name: str):
  """The loaded config as the family's training recipe (SharpMask: stage 2)."""
  train = ml_collections.ConfigDict(config.to_dict())
  for field, default in config_schema.get_config().items():
    if field not in train:
      train[field] = default
  train.model, train.batch_size, train.optimizer = name, _BATCH.value, 'sgd'
  if name == 'sharpmask':  # configs/sharpmask.py: plain SGD, 160-px labels.
    train.patch.label_size = config.patch.object_window
    train.momentum, train.weight_decay = 0.0, 0.0
  else:  # configs/deepmask.py.
    train.momentum, train.weight_decay = 0.9, 5e-4
  return train


def _jax_runner(config, model, name: str, variables: dict):
  """(DataParallel, replicated TrainState) of the project's own train step."""
  family = get_family(name)
  optimization = family.optimization(config, variables['params'])
  loss_fns = {h: family.loss_fn(config, model, h) for h in optimization.heads}
  runner = DataParallel(make_step_fns(optimization, loss_fns),
                        family.batch_keys(config), config.parallel)
  state = create_train_state(config, jax.tree.map(jnp.asarray, variables),
                             optimization)
  return runner, runner.replicate(state)


if __name__ == '__main__':
  app.run(main)
