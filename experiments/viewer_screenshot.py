r"""A screenshot of the viewer page with trained models, e.g. docs/viewer.png.

    PYTHONPATH=. python experiments/viewer_screenshot.py --model DIR \
        [--model DIR2 ...] --image IMAGE.jpg [--threshold 0.3] [--hover 1] \
        [--width 960] [--max_kb 200] --out docs/viewer.png

Serves the viewer (deepmask_jax/viewer) in this process on a free loopback
port with the given model directories or training workdirs, opens it in
headless Chromium (deepmask_jax/viewer/driver.py), uploads --image, waits
for every panel's masks (the first call compiles), moves the score
threshold to --threshold if given, hovers the --hover-th shown result of
the first panel (its tooltip: rank, class for EmbedMask, score; 0: no
hover), and saves the page cropped to its content as a 256-colour PNG,
scaled down until it is at most --max_kb. The window is --width CSS pixels
wide and as tall as the panels need to show the image at their full width
(the page fits a canvas to its panel's width and the window's height).
"""

import argparse
import base64
import io
import os
import sys

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils
from scipy import ndimage

from deepmask_jax.errors import InputError
from deepmask_jax.viewer.driver import (NoBrowser, browser, downloaded,
                                        hover_text, serving, set_control,
                                        upload)
from deepmask_jax.viewer.predictions import ViewerState, load_models

FIRST_CALL_SECONDS = 1800  # Compiling a full-size model on a loaded CPU.
MARGIN = 8  # CSS pixels kept around the content.
# The page's layout (deepmask_jax/viewer/static): body margin, the gap
# between panels, a panel's two borders, and what fit() in viewer.js leaves
# beside and above a canvas (its `room` and `tall`).
BODY_MARGIN, PANEL_GAP, PANEL_BORDERS, FIT_ROOM, FIT_TALL = 16, 12, 2, 18, 200
SLACK = 80  # Window height beyond FIT_TALL: the canvas fills the width.

# The smallest box holding every shown element of the body (the tooltip
# too), in page CSS pixels: [left, top, right, bottom].
CONTENT_BOX = """
const boxes = [...document.body.children]
    .filter((e) => !e.hidden && e.tagName !== 'SCRIPT')
    .map((e) => e.getBoundingClientRect())
    .filter((b) => b.width > 0 && b.height > 0);
return [Math.min(...boxes.map((b) => b.left)) + scrollX,
        Math.min(...boxes.map((b) => b.top)) + scrollY,
        Math.max(...boxes.map((b) => b.right)) + scrollX,
        Math.max(...boxes.map((b) => b.bottom)) + scrollY];
"""


def window_height(width: int, models: int, image_size: tuple) -> int:
  """A window height at which each panel's canvas fills the panel's width.

  A bit more than fit() needs, so the page's own height fits in the window.

  image_size: (width, height) of the image in pixels.
  """
  panel = (width - 2 * BODY_MARGIN - PANEL_GAP * (models - 1)) / models
  canvas_width = panel - PANEL_BORDERS - FIT_ROOM
  return int(canvas_width * image_size[1] / image_size[0]) + FIT_TALL + SLACK


def interior_pixel(rle) -> tuple:
  """(x, y) of the pixel of a mask farthest from its edge."""
  inside = ndimage.distance_transform_edt(
      np.pad(mask_utils.decode(rle), 1))[1:-1, 1:-1]
  y, x = np.unravel_index(np.argmax(inside), inside.shape)
  return int(x), int(y)


def content_png(page) -> Image.Image:
  """The page's content box as an RGB image (beyond the window if need be)."""
  left, top, right, bottom = page.execute_script(CONTENT_BOX)
  clip = {'x': max(0, left - MARGIN), 'y': max(0, top - MARGIN), 'scale': 1}
  clip['width'] = right + MARGIN - clip['x']
  clip['height'] = bottom + MARGIN - clip['y']
  shot = page.execute_cdp_cmd('Page.captureScreenshot', {
      'format': 'png', 'clip': clip, 'captureBeyondViewport': True})
  return Image.open(io.BytesIO(base64.b64decode(shot['data']))).convert('RGB')


def small_png(image: Image.Image, max_bytes: int) -> bytes:
  """`image` as a 256-colour PNG, scaled down by 10% steps to max_bytes."""
  while True:
    buffer = io.BytesIO()
    image.quantize(256, dither=Image.Dither.NONE).save(buffer, 'PNG',
                                                       optimize=True)
    if buffer.tell() <= max_bytes or image.width < 200:
      return buffer.getvalue()
    image = image.resize((round(image.width * 0.9), round(image.height * 0.9)),
                         Image.Resampling.LANCZOS)


def set_viewport(page, width: int, height: int) -> None:
  """Exactly this viewport, no scrollbars (--window-size is only roughly it)."""
  page.execute_cdp_cmd('Emulation.setDeviceMetricsOverride', {
      'width': width, 'height': height, 'deviceScaleFactor': 1,
      'mobile': False})
  page.execute_cdp_cmd('Emulation.setScrollbarsHidden', {'hidden': True})


def screenshot(args, page, server_url: str) -> str:
  """Drives the page, writes args.out; returns what it shows, in words."""
  page.get(server_url)
  seconds = upload(page, os.path.abspath(args.image), FIRST_CALL_SECONDS)
  if args.threshold is not None:
    set_control(page, 'threshold', args.threshold)
  shown = downloaded(page)
  tooltip = ''
  if args.hover and len(shown) >= args.hover:
    tooltip = hover_text(page, *interior_pixel(shown[args.hover - 1][
        'segmentation']))
  data = small_png(content_png(page), args.max_kb * 1000)
  with open(args.out, 'wb') as file:
    file.write(data)
  size = Image.open(io.BytesIO(data)).size
  return (f'{args.out}: {size[0]} x {size[1]} pixels, {len(data) // 1000} KB; '
          f'masks after {seconds:.1f} s; first panel shows {len(shown)} '
          f'results; tooltip: {tooltip or "none"}')


def main():
  parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
  parser.add_argument('--model', action='append', required=True,
                      help='model directory or training workdir; repeat '
                      'for panels side by side')
  parser.add_argument('--image', required=True, help='the image to upload')
  parser.add_argument('--threshold', type=float, default=None,
                      help="the page's score threshold (default: the page's)")
  parser.add_argument('--hover', type=int, default=1, help='hover this '
                      'shown result of the first panel (1: the best; 0: none)')
  parser.add_argument('--width', type=int, default=960,
                      help='browser window width, CSS pixels')
  parser.add_argument('--max_kb', type=int, default=200)
  parser.add_argument('--num_proposals', type=int, default=100)
  parser.add_argument('--out', required=True, help='the PNG to write')
  args = parser.parse_args()
  if not os.path.isfile(args.image):
    parser.error(f'--image={args.image}: no such file')
  try:
    with Image.open(args.image) as image:
      image_size = image.size
    state = ViewerState(load_models(args.model,
                                    results_per_image=args.num_proposals))
    height = window_height(args.width, len(args.model), image_size)
    page = browser(args.width, height)
  except (InputError, NoBrowser, OSError) as error:
    sys.exit(f'error: {error}')
  try:
    set_viewport(page, args.width, height)
    with serving(state) as server:
      print(screenshot(args, page, server.url), flush=True)
  finally:
    page.quit()


if __name__ == '__main__':
  main()
