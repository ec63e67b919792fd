r"""Full-size EmbedMask `.pth` and MSRA R-50 `.pkl` conversion figures.

Writes a random full-size R-50-FPN EmbedMask state dict (80 classes, D 16,
4-conv towers, 256 channels; maskrcnn-benchmark names, module.-prefixed in a
checkpoint dict) with the test-side writer in each PyTorch container, and a
Detectron R-50 `.pkl`; times `convert` (read, map, check, write) and compares
our Flax outputs with the numpy forward of the PyTorch modules:

  PYTHONPATH=. python experiments/convert_full_size_pth.py --side 128
"""

import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import jax
import jax.numpy as jnp
import numpy as np

from deepmask_jax.convert import convert
from deepmask_jax.models import Trunk
from deepmask_jax.testing import embedmask_reference as reference
from deepmask_jax.testing import pth_writer
from deepmask_jax.testing.compare import embedmask_errors
from deepmask_jax.testing.pth_writer import maskrcnn_checkpoint
from deepmask_jax.testing.torch_reference import relative_error

_SIDE = flags.DEFINE_integer('side', 128, 'Square input side (multiple of 32).')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the weights and inputs.')

FULL = reference.Geometry(stem=64, widths=(64, 128, 256, 512),
                          depths=(3, 4, 6, 3), fpn=256, num_convs=4,
                          num_classes=80, embed_dim=16)


def _timed_convert(path, out):
  start = time.perf_counter()
  conversion = convert(path, out)
  return conversion, time.perf_counter() - start


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  images = np.random.default_rng(_SEED.value).normal(
      size=(1, 3, _SIDE.value, _SIDE.value)) * 50
  state = reference.embedmask_state(FULL, _SEED.value)
  count = sum(v.size for v in state.values())
  print(f'EmbedMask R-50 state dict: {len(state)} tensors, {count:,} values')
  with tempfile.TemporaryDirectory() as workdir:
    conversion = None
    for name, writer in (('zip', pth_writer.write_zip),
                         ('legacy', pth_writer.write_legacy)):
      path = f'{workdir}/{name}.pth'
      writer(path, maskrcnn_checkpoint(state))
      conversion, seconds = _timed_convert(path, f'{workdir}/{name}')
      print(f'{name:6} .pth conversion {seconds:5.2f} s')
    errors = embedmask_errors(conversion, state, images, geometry=FULL)
    print('EmbedMask max rel. diff: ' + ', '.join(
        f'{k} {v:.1e}' for k, v in errors.items()))
    blobs, body = reference.caffe2_blobs(FULL, _SEED.value)
    pth_writer.write_detectron_pkl(f'{workdir}/R-50.pkl', blobs)
    conversion, seconds = _timed_convert(f'{workdir}/R-50.pkl',
                                         f'{workdir}/msra')
    config = conversion.config.trunk
    trunk = Trunk(padding='zero', stem_width=config.stem_width,
                  widths=config.widths, depths=config.depths,
                  stride_in_1x1=config.stride_in_1x1, norm=config.norm)
    ours = jax.jit(trunk.apply)(
        {c: t['trunk'] for c, t in conversion.variables.items()},
        jnp.asarray(images.transpose(0, 2, 3, 1), jnp.float32))
    theirs = reference.resnet_body(body, images, reference.frozen_bn, FULL)
    worst = max(relative_error(np.asarray(ours[f'layer{k}']).transpose(
        0, 3, 1, 2), expected) for k, expected in enumerate(theirs, 1))
    print(f'R-50 .pkl conversion {seconds:5.2f} s, trunk max rel. diff '
          f'{worst:.1e}')


if __name__ == '__main__':
  app.run(main)
