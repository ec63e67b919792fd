r"""How long the viewer makes a user wait, per family, on this machine.

    PYTHONPATH=. python experiments/viewer_timing.py [--size demo|full] \
        [--families deepmask,sharpmask,embedmask] [--images A.jpg,B.jpg] \
        [--models DIR,...]

For each family a random-weight model of the demo configs (configs/demo*.py)
or the full-size ones (configs/deepmask.py, sharpmask.py, embedmask.py) is
written to a temporary model directory. The viewer command starts in a
fresh process (no XLA compilation cache) and the script prints: seconds
from the command to the first page (HTTP 200 on /), then, in headless
Chromium (deepmask_jax/viewer/driver.py), seconds from the
upload to the panel's drawn masks for the first image (the network
compiles) and for a second image of the same size (programs reused).
Weights change the time only through the number of results (a random
EmbedMask finds nothing); --models times trained model directories or
workdirs instead.
"""

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
import urllib.request

import ml_collections

from deepmask_jax.families import get_family
from deepmask_jax.families.deepmask.patch_geometry import patch_side
from deepmask_jax.models.store import save_model
from deepmask_jax.train.initialization import fresh_variables
from deepmask_jax.viewer.driver import browser, upload

COCO_VAL = os.path.realpath(os.path.join(
    os.path.dirname(__file__), '..', '..', 'shared', 'data', 'coco_tiny',
    'val2017'))
IMAGES = ','.join(os.path.join(COCO_VAL, name) for name in
                  ('000000005001.jpg', '000000025603.jpg'))  # 640 x 480 both.


def family_config(family: str, size: str) -> ml_collections.ConfigDict:
  """The demo or full-size config of `family`, ready to build."""
  # pylint: disable=g-import-not-at-top
  if size == 'demo':
    from configs import demo as deepmask_config
    from configs import demo_embedmask as embedmask_config
  else:
    from configs import deepmask as deepmask_config
    from configs import embedmask as embedmask_config
  if family == 'embedmask':
    return embedmask_config.get_config()  # 80 generic classes if unset.
  config = deepmask_config.get_config()
  if family == 'sharpmask':  # The architecture of the DeepMask it refines.
    config.model = 'sharpmask'
    config.patch.label_size = config.patch.object_window
    config.refine.km = 64 if size == 'demo' else 32
  return config


def write_model(family: str, size: str, folder: str) -> str:
  config = family_config(family, size)
  model = get_family(family).build_model(config)
  if family == 'sharpmask':  # Its own init reads the DeepMask it refines.
    side = patch_side(config)
    variables = fresh_variables(model, config.seed, (1, side, side, 3))
  else:
    variables = get_family(family).init_variables(config, model)
  path = os.path.join(folder, f'{size}_{family}')
  save_model(path, variables, config)
  return path


def first_page(model_dir: str):
  """(process, url, seconds from the command to the first page)."""
  env = {k: v for k, v in os.environ.items()
         if k != 'JAX_COMPILATION_CACHE_DIR'}
  started = time.perf_counter()
  process = subprocess.Popen(
      [sys.executable, '-m', 'deepmask_jax.viewer', f'--model={model_dir}',
       '--port=0', '--platform=cpu'], stdout=subprocess.PIPE, text=True,
      env=env)
  for line in process.stdout:
    if match := re.search(r'open (http://\S+)', line):
      break
  else:
    raise RuntimeError('the viewer ended before serving')
  with urllib.request.urlopen(match.group(1), timeout=60) as page:
    page.read()
  return process, match.group(1), time.perf_counter() - started


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--size', choices=('demo', 'full'), default='demo')
  parser.add_argument('--families', default='deepmask,sharpmask,embedmask')
  parser.add_argument('--images', default=IMAGES,
                      help='two images of the same size, comma-separated')
  parser.add_argument('--models', default='', help='model directories or '
                      'workdirs to time instead of random models')
  args = parser.parse_args()
  images = [os.path.realpath(path) for path in args.images.split(',')]
  with tempfile.TemporaryDirectory() as folder:
    names = (args.models or args.families).split(',')
    for name in names:
      model_dir = name if args.models else write_model(name, args.size,
                                                       folder)
      process, url, page_seconds = first_page(model_dir)
      page = browser()
      try:
        page.get(url)
        first, second = (upload(page, path, 1800) for path in images)
        status = page.find_element('css selector', '.panel .status').text
      finally:
        page.quit()
        process.terminate()
        process.wait()
      label = name if args.models else f'{args.size} {name}'
      print(f'{label}: first page {page_seconds:.1f} s; '
            f'upload to masks {first:.1f} s (first image, compiles), '
            f'{second:.1f} s (next image); panel: {status}', flush=True)


if __name__ == '__main__':
  main()
