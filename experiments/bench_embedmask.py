r"""EmbedMask speed: full-size inference split into stages, and training images/s.

  python experiments/bench_embedmask.py [--config=configs/embedmask.py] \
      [--images=3] [--train_steps=2] [--train_batch=2]

Builds the configured EmbedMask (ResNet-50-FPN, 80 classes by default) with
random weights and times, on 640x480 images resized to 800 px (the 800x1344
canvas):
  network   the jitted forward pass (trunk, FPN, heads) alone;
  detect    the whole jitted program: forward + thresholds, top-k, class-aware
            NMS and the stride-4 mask log-probabilities (network included);
  paste     the masks pasted at the original size (bilinear, threshold);
  rle       pycocotools RLE encoding.
With random weights almost nothing passes the 0.05 score threshold, so the
detection stage is also timed with `--score_threshold=0` to fill all 100
detections (the worst case for NMS and masks). Then training: images/s of the
jitted step on in-memory batches (deepmask_jax/families/embedmask/random_batches.py) at the
canvas size. No TensorFlow needed. The reference paper's figure: 16.7 images/s
for R-50 on a V100.
"""

import time

from absl import app, flags
import jax
import jax.numpy as jnp
import numpy as np
from ml_collections import config_flags
from pycocotools import mask as mask_utils

from deepmask_jax.families.embedmask.geometry import (LANDSCAPE,
                                                     DetectionGeometry)
from deepmask_jax.families.embedmask.random_batches import detection_batch
from deepmask_jax.families import bind, get_family
from deepmask_jax.families.embedmask.segmenter import InstanceSegmenter
from deepmask_jax.train.trainer import setup

from bench_embedmask_postprocess import median_seconds  # Beside this file.

FLAGS = flags.FLAGS
config_flags.DEFINE_config_file('config', 'configs/embedmask.py',
                                'A configs/*.py file of an EmbedMask.')
flags.DEFINE_integer('images', 3, 'Timed inference images (after a warm-up).')
flags.DEFINE_integer('train_steps', 2, 'Timed training steps (0: skip).')
flags.DEFINE_integer('train_batch', 2, 'Images per training step.')


def inference(config, model, variables, image, **overrides) -> dict:
  """Seconds per stage for one image."""
  segmenter = InstanceSegmenter(model, variables, config, **overrides)
  canvas, resized = segmenter.prepare(image)
  canvas = jnp.asarray(canvas)
  forward = jax.jit(model.apply)
  stages = {'network': median_seconds(lambda: forward(segmenter.variables, canvas),
                             FLAGS.images),
            'detect': median_seconds(lambda: segmenter.detect(image), FLAGS.images)}
  found, _ = segmenter.detect(image)
  stages['detections'] = len(found['scores'])
  masks = segmenter.paster(found['mask_logprob'], resized, image.shape[:2])
  stages['paste'] = median_seconds(lambda: segmenter.paster(
      found['mask_logprob'], resized, image.shape[:2]), FLAGS.images)
  stages['rle'] = median_seconds(lambda: mask_utils.encode(np.asfortranarray(
      masks.transpose(1, 2, 0).astype(np.uint8))), FLAGS.images)
  return stages


def training(config) -> float:
  """Images/s of the jitted train step at the landscape canvas."""
  config.batch_size = FLAGS.train_batch
  _, runner, state = setup(bind(config))
  state = runner.replicate(state)
  batch = detection_batch(config, 0, DetectionGeometry.from_config(
      config.detection).canvas_shapes()[LANDSCAPE])
  state, metrics = runner.step(state, batch, 'instances')
  jax.block_until_ready(metrics)
  start = time.perf_counter()
  for _ in range(FLAGS.train_steps):
    state, metrics = runner.step(state, batch, 'instances')
  jax.block_until_ready(metrics)
  return FLAGS.train_steps * FLAGS.train_batch / (time.perf_counter() - start)


def main(argv):
  del argv
  config = FLAGS.config
  family = get_family('embedmask')
  model = family.build_model(config)
  variables = family.init_variables(config, model)
  image = np.random.default_rng(0).integers(0, 256, (480, 640, 3), np.uint8)
  canvas = DetectionGeometry.from_config(
      config.detection).canvas_shapes()[LANDSCAPE]
  print(f'device: {jax.devices()[0].device_kind} ({jax.default_backend()}), '
        f'dtype {config.dtype}, canvas {canvas}')
  for label, overrides in (('trained-like threshold 0.05', {}),
                           ('threshold 0 (100 detections)',
                            {'score_threshold': 0.0})):
    stages = inference(config, model, variables, image, **overrides)
    total = stages['detect'] + stages['paste'] + stages['rle']
    print(f'{label}: network {stages["network"] * 1e3:.0f} ms, detect '
          f'(network + NMS + mask maps) {stages["detect"] * 1e3:.0f} ms, '
          f'paste {stages["paste"] * 1e3:.0f} ms, RLE '
          f'{stages["rle"] * 1e3:.0f} ms for {stages["detections"]} '
          f'detections; {1 / total:.2f} images/s end to end')
  if FLAGS.train_steps:
    rate = training(config)
    print(f'training: {rate:.2f} images/s (batch {FLAGS.train_batch}, '
          f'{jax.device_count()} device(s))')


if __name__ == '__main__':
  app.run(main)
