r"""Proposal throughput: images/s of DeepMask and SharpMask, per image and
streamed, with the share of time each stage is busy.

    python experiments/bench_proposals.py [--models deepmask,sharpmask]
        [--images 8] [--per_call 1,2,4] [--num_proposals 1000]
        [--encode_workers 2] [--model_dir DIR] [--tiny] [--json out.json]
        [--coco_pass ../shared/data/coco_tiny]

Each model runs on a stream of --images 640x480 images (random pixels with a
few bright rectangles), 1000 proposals per image, RLE and COCO results JSON
text included, after a warm-up that pays for the compilations. In one run:
  before   `propose_one` image after image (the per-image path). Its stages,
           each timed to completion, add up to the total:
             network  pyramid canvases, trunk + score maps, top-k merge,
                      mask decoding (mask head or SharpMask refinement);
             paste    pasting the K masks at 640x480, host copy;
             rle/json pycocotools RLE, toBbox, results JSON text.
  after    `ProposalGenerator.stream` over the same images, once per
           --per_call value (images whose pyramid levels share device
           calls). Stage shares are busy seconds / wall seconds: prepare
           (host threads), device (dispatch and waits for the rankings),
           fetch (mask copies), encode (worker processes), json (the
           caller); shares add up to more than 1 when stages overlap.
Without --model_dir the models are the full ResNet-50 DeepMask / SharpMask
with random weights (speed does not depend on the weights); --tiny uses a
tiny trunk for a quick smoke run.

--coco_pass DIR instead runs per-image evaluation over DIR's val2017 split
with each model and reports the compilations the pass needed (the programs
per jitted function, and every XLA backend compilation, small eager ops
included), seconds per image and the AR figures.
"""

import argparse
import json
import os
import pathlib
import sys
import tempfile
import time

import jax
import jax.numpy as jnp
import numpy as np
from pycocotools import mask as mask_utils

# This checkout's package, not an installed one (imports below follow).
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from deepmask_jax.config_schema import get_config
from deepmask_jax.evaluation.ground_truth import load_ground_truth
from deepmask_jax.evaluation.per_image import evaluate_per_image
from deepmask_jax.evaluation.results_json import segm_results
from deepmask_jax.families.deepmask.generator import ProposalGenerator
from deepmask_jax.inference.streaming import StageClock
from deepmask_jax.families import build_model
from deepmask_jax.models.store import load_model

BACKEND_COMPILE_EVENT = '/jax/core/compile/backend_compile_duration'

HEIGHT, WIDTH = 480, 640


def benchmark_image(seed: int) -> np.ndarray:
  rng = np.random.default_rng(seed)
  image = rng.integers(0, 256, (HEIGHT, WIDTH, 3), dtype=np.uint8)
  for _ in range(4):
    y, x = rng.integers(0, HEIGHT - 100), rng.integers(0, WIDTH - 100)
    image[y:y + rng.integers(30, 100), x:x + rng.integers(30, 100)] = (
        rng.integers(0, 256, 3))
  return image


def make_model(kind: str, args):
  """(model, variables, config): --model_dir's, or a random-weight one."""
  if args.model_dir:
    variables, config = load_model(args.model_dir)
    return build_model(config), variables, config
  config = get_config()
  config.model = kind
  if args.tiny:
    config.trunk.stem_width, config.trunk.widths = 8, (4, 8, 8)
    config.trunk.depths = (1, 1, 1)
  model = build_model(config)
  variables = jax.jit(model.init)(jax.random.PRNGKey(0),
                                  jnp.zeros((1, 192, 192, 3)))
  return model, variables, config


def coco_pass(kind: str, args) -> dict:
  """Per-image evaluation over a COCO val split, counting compilations."""
  model, variables, config = make_model(kind, args)
  compiles = []
  jax.monitoring.register_event_duration_secs_listener(
      lambda event, seconds, **_: compiles.append(seconds)
      if event == BACKEND_COMPILE_EVENT else None)
  with tempfile.TemporaryDirectory() as out:
    figures = evaluate_per_image(
        ProposalGenerator(model, variables, config,
                          results_per_image=args.num_proposals),
        load_ground_truth(
            os.path.join(args.coco_pass, 'annotations', 'instances_val2017.json'),
            os.path.join(args.coco_pass, 'val2017')), out)
  figures.update(model=kind, backend_compilations=len(compiles),
                 compile_seconds=float(np.sum(compiles)))
  return figures


def time_image(generator: ProposalGenerator, image: np.ndarray) -> dict:
  """Seconds per stage of the per-image path for one image."""
  start = time.perf_counter()
  [windows] = generator.run_network([image])
  jax.block_until_ready(windows.windows.logits)
  network = time.perf_counter()
  chunks = [masks for masks, _ in generator.paste(
      windows, column_major=True, with_boxes=False)]
  pasted = time.perf_counter()
  rles = [rle for masks in chunks for rle in generator.encode(masks)]
  mask_utils.toBbox(rles)
  text = json.dumps(segm_results(1, rles, windows.windows.probs, 1))
  encoded = time.perf_counter()
  assert len(rles) == len(windows.windows.probs) and text
  return {'network': network - start, 'paste': pasted - network,
          'rle/json': encoded - pasted, 'total': encoded - start}


def per_image(generator: ProposalGenerator, images) -> dict:
  """The per-image path over the stream: images/s and stage shares."""
  time_image(generator, images[0])  # Compiles.
  times = [time_image(generator, image) for image in images]
  total = {stage: float(np.sum([t[stage] for t in times]))
           for stage in times[0]}
  return {'images_per_second': len(images) / total['total'],
          'seconds_per_image': total['total'] / len(images),
          'shares': {stage: seconds / total['total']
                     for stage, seconds in total.items() if stage != 'total'},
          'compilations': generator.compilations}


def streamed(generator: ProposalGenerator, images) -> dict:
  """`stream` over the images (after a warm-up group): images/s, shares."""
  warmup = images[:generator.settings.images_per_call]
  for _ in generator.stream(warmup):
    pass
  clock = StageClock()
  start = time.perf_counter()
  count = 0
  for proposals in generator.stream(iter(images), clock):
    with clock.timing('json'):
      text = json.dumps(segm_results(count + 1, proposals.rles,
                                     proposals.scores, 1))
    assert text and len(proposals.rles)
    count += 1
  wall = time.perf_counter() - start
  return {'images_per_call': generator.settings.images_per_call,
          'images_per_second': count / wall, 'seconds_per_image': wall / count,
          'shares': clock.shares(), 'compilations': generator.compilations}


def run(kind: str, args) -> dict:
  model, variables, config = make_model(kind, args)
  images = [benchmark_image(i) for i in range(args.images)]
  generator = lambda **settings: ProposalGenerator(
      model, variables, config, results_per_image=args.num_proposals,
      encode_workers=args.encode_workers, **settings)
  before = per_image(generator(), images)
  after = [streamed(generator(images_per_call=n), images)
           for n in map(int, args.per_call.split(','))]
  return {'model': kind, 'images': args.images, 'before': before,
          'after': after}


def shares_text(shares: dict) -> str:
  return ', '.join(f'{stage} {share:.0%}' for stage, share in shares.items())


def report(rows: list[dict]) -> str:
  lines = ['| model | path | images/call | images/s | s/image | busy share '
           'per stage |', '|---|---|---|---|---|---|']
  for row in rows:
    before = row['before']
    lines.append(f"| {row['model']} | per image | 1 | "
                 f"{before['images_per_second']:.3f} | "
                 f"{before['seconds_per_image']:.3f} | "
                 f"{shares_text(before['shares'])} |")
    for after in row['after']:
      lines.append(f"| {row['model']} | streamed | {after['images_per_call']} "
                   f"| {after['images_per_second']:.3f} | "
                   f"{after['seconds_per_image']:.3f} | "
                   f"{shares_text(after['shares'])} |")
  return '\n'.join(lines)


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--models', default='deepmask,sharpmask')
  parser.add_argument('--images', type=int, default=8,
                      help='images in the timed stream')
  parser.add_argument('--per_call', default='1,2,4',
                      help='images per device call to try when streaming')
  parser.add_argument('--encode_workers', type=int, default=2,
                      help='RLE-encoding processes when streaming')
  parser.add_argument('--num_proposals', type=int, default=1000)
  parser.add_argument('--model_dir', default='')
  parser.add_argument('--tiny', action='store_true')
  parser.add_argument('--json', default='')
  parser.add_argument('--coco_pass', default='')
  args = parser.parse_args()
  device = jax.devices()[0]
  if args.coco_pass:
    passes = [coco_pass(kind, args) for kind in args.models.split(',')]
    for figures in passes:
      print(f"{figures['model']}: {figures['num_images']} images, "
            f"{figures['seconds_per_image']:.2f} s/image; programs "
            f"{figures['compilations']}; XLA backend compilations "
            f"{figures['backend_compilations']} "
            f"({figures['compile_seconds']:.0f} s)")
    if args.json:
      with open(args.json, 'w') as f:
        json.dump({'device': str(device), 'passes': passes}, f, indent=2)
    return
  rows = [run(kind, args) for kind in args.models.split(',')]
  print(f'device: {device.platform} ({device.device_kind}), '
        f'{HEIGHT}x{WIDTH} images, {args.num_proposals} proposals, '
        f'streams of {args.images} images after a warm-up')
  print(report(rows))
  for row in rows:
    print(f"{row['model']} programs compiled: per image "
          f"{row['before']['compilations']}; streamed "
          f"{[a['compilations'] for a in row['after']]}")
  if args.json:
    with open(args.json, 'w') as f:
      json.dump({'device': str(device), 'rows': rows}, f, indent=2)


if __name__ == '__main__':
  main()
