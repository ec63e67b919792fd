"""Times EmbedMask post-processing: NMS of K candidates and a whole detect().

  PYTHONPATH=. python experiments/bench_embedmask_postprocess.py [--canvas 800 1344]

NMS runs on K crowded random boxes (80 classes, random scores); detect() on
random outputs of one canvas (C = 80, D = 16), whose logits put about 2% of
the (location, class) pairs over the score threshold, so every level fills
its 1000 candidates (K = 5000). Times are medians of warm runs.
"""

import argparse
import functools
import time

import jax
import numpy as np

from deepmask_jax.families.embedmask.postprocess import (DetectSettings,
                                                          class_aware_nms,
                                                          detect)
from deepmask_jax.families.embedmask.fcos_geometry import locations


def median_seconds(run, repeats: int) -> float:
  jax.block_until_ready(run())  # Compile.
  times = []
  for _ in range(repeats):
    start = time.perf_counter()
    jax.block_until_ready(run())
    times.append(time.perf_counter() - start)
  return float(np.median(times))


def bench_nms(num: int, repeats: int) -> float:
  rng = np.random.default_rng(0)
  centre = rng.uniform(0, 800, (num, 2))
  size = rng.uniform(20, 200, (num, 2))
  boxes = np.concatenate([centre - size / 2, centre + size / 2], 1)
  nms = jax.jit(functools.partial(class_aware_nms, iou_threshold=0.6,
                                  max_keep=100))
  args = (boxes.astype(np.float32), rng.uniform(0, 1, num).astype(np.float32),
          rng.integers(0, 80, num).astype(np.int32), np.ones(num, bool))
  return median_seconds(lambda: nms(*args), repeats)


def bench_detect(canvas, repeats: int) -> float:
  rng = np.random.default_rng(0)
  num = len(locations(*canvas)[0])
  outputs = {
      'cls_logits': rng.normal(-5, 1.2, (1, num, 80)).astype(np.float32),
      'box_regression': rng.uniform(0.5, 6, (1, num, 4)).astype(np.float32),
      'centerness': rng.normal(0, 1, (1, num)).astype(np.float32),
      'proposal_embedding': rng.normal(size=(1, num, 16)).astype(np.float32),
      'proposal_margin': rng.uniform(0.1, 2, (1, num, 16)).astype(np.float32),
      'pixel_embedding': rng.normal(
          size=(1, canvas[0] // 4, canvas[1] // 4, 16)).astype(np.float32)}
  outputs = jax.device_put(outputs)
  image_hw = np.array([canvas])
  return median_seconds(lambda: detect(outputs, image_hw, DetectSettings()),
                        repeats)


def main():
  parser = argparse.ArgumentParser()
  parser.add_argument('--canvas', type=int, nargs=2, default=(800, 1344))
  parser.add_argument('--repeats', type=int, default=5)
  args = parser.parse_args()
  print(f'device: {jax.devices()[0].device_kind}')
  for num in (1000, 5000):
    print(f'NMS of {num} boxes, 100 kept: '
          f'{bench_nms(num, args.repeats) * 1e3:.1f} ms')
  print(f'detect() on a {args.canvas[0]}x{args.canvas[1]} canvas: '
        f'{bench_detect(tuple(args.canvas), args.repeats) * 1e3:.1f} ms')


if __name__ == '__main__':
  main()
