r"""Full-size converter figures: conversion time and output differences.

Writes full-size trees with the test-side Torch7 writer (the released
ResNet-50 layout; DeepMask and SharpMask with the reference sizes: iSz 160,
128x10x10 -> 512, oSz 56, gSz 112, km 32), converts each, and compares our
Flax outputs with the numpy Torch interpreter on random 192x192 patches:

  PYTHONPATH=. python experiments/convert_full_size.py --batch 2
"""

import dataclasses
import tempfile
import time

from absl import app
from absl import flags
from absl import logging
import numpy as np

from deepmask_jax.convert import convert_t7
from deepmask_jax.testing import torch_reference as reference
from deepmask_jax.testing import torch_trees as trees
from deepmask_jax.testing.compare import apply_model, patch_errors, trunk_errors
from deepmask_jax.testing.t7_writer import write_t7

_BATCH = flags.DEFINE_integer('batch', 2, 'Patches per comparison.')
_SEED = flags.DEFINE_integer('seed', 0, 'Seed of the weights and inputs.')

FULL = trees.Geometry(stem=64, widths=(64, 128, 256), depths=(3, 4, 6),
                      object_window=160, feature_channels=128, embedding=512,
                      mask_size=56, label_size=112, score_hidden=1024, km=32)


def _convert(tree, workdir, name):
  """Writes `tree`, converts it; returns (Conversion, seconds to convert)."""
  path = f'{workdir}/{name}.t7'
  write_t7(path, tree, cuda=True)
  start = time.perf_counter()
  conversion = convert_t7(path, f'{workdir}/{name}')
  return conversion, time.perf_counter() - start


def main(argv):
  del argv
  logging.set_verbosity(logging.WARNING)
  geometry = dataclasses.replace(FULL, batch=_BATCH.value)
  side = geometry.object_window + 32
  images = np.random.default_rng(_SEED.value).normal(
      size=(geometry.batch, 3, side, side))
  with tempfile.TemporaryDirectory() as workdir:
    tree = trees.resnet_file(geometry, trees.TrunkStyle(), _SEED.value,
                             layer4=(512, 3), classes=1000)
    conversion, seconds = _convert(tree, workdir, 'resnet50')
    expected = reference.module_outputs(tree, images, 8)  # Through layer4.
    errors = trunk_errors(conversion.variables, conversion.config, images,
                          expected)
    print(f'resnet-50  conversion {seconds:5.2f} s  trunk max rel. diff '
          f'{max(errors.values()):.2e}')
    for name, make, forward in (
        ('deepmask', trees.deepmask_file, reference.deepmask_forward),
        ('sharpmask', trees.sharpmask_file, reference.sharpmask_forward)):
      tree = make(geometry, seed=_SEED.value)
      conversion, seconds = _convert(tree, workdir, name)
      errors = patch_errors(apply_model(conversion, images),
                            *forward(tree['model'], images))
      print(f'{name:10} conversion {seconds:5.2f} s  mask max rel. diff '
            f"{errors['mask']:.2e}  score {errors['score']:.2e}")


if __name__ == '__main__':
  app.run(main)
