"""The viewer in a real browser: headless Chromium driven by Selenium.

Two tiny DeepMasks (random weights, two seeds: the second reuses the first's
compiled programs) are saved as model directories and served side by side
on a free loopback port; the page gets a
COCO image, draws the masks, redraws when the threshold moves, and answers a
text file with a message. Needs
Debian's `chromium` and `chromium-driver` and the `selenium` package (the
`test` extra); skips, saying which is missing, without them.
"""

import base64
import io
import time

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as mask_utils

from deepmask_jax.inference.images import read_image
from deepmask_jax.models.store import save_model
from deepmask_jax.viewer import driver
from deepmask_jax.viewer.driver import (downloaded, hover_text, serving,
                                        set_control, wait_for)
from deepmask_jax.viewer.predictions import ViewerState, load_models
from tests.conftest import tiny_model

IMAGE = '000000404484.jpg'  # 320 x 240, the smallest of coco_tiny's val.
RESULTS = 30  # Per image; the page's top-K is set to all of them.
FIRST_CALL_SECONDS = 300  # Compiling on a loaded 2-core CPU.


def browser():
  """A headless Chromium WebDriver, or a skip naming what is missing."""
  try:
    return driver.browser()
  except driver.NoBrowser as error:
    pytest.skip(str(error))


def canvas_pixels(page) -> np.ndarray:
  """[H, W, 3] of the first panel's canvas, as drawn."""
  url = page.execute_script(
      "return document.querySelector('.panel canvas').toDataURL('image/png')")
  data = base64.b64decode(url.split(',', 1)[1])
  return np.asarray(Image.open(io.BytesIO(data)).convert('RGB'))


def shown_count(page) -> int:
  return int(page.find_element('css selector', '.panel .count').text)


def test_upload_draw_threshold_and_error_in_chromium(tmp_path, coco_tiny):
  page = browser()
  started = time.time()
  model_dirs = []
  for seed in (0, 1):
    model_dirs.append(str(tmp_path / f'tiny_deepmask_{seed}'))
    _, variables, config = tiny_model('deepmask', seed)
    save_model(model_dirs[-1], variables, config)
  state = ViewerState(load_models(model_dirs, results_per_image=RESULTS))
  image_path = str(coco_tiny / 'val2017' / IMAGE)
  try:
    with serving(state) as server:
      page.get(server.url)
      wait_for(lambda: page.find_elements('css selector', '.panel'), 30,
               'the model panels')
      page.find_element('id', 'file').send_keys(image_path)
      wait_for(lambda: 'the first image compiles' in page.find_element(
          'css selector', '.panel .status').text, 30, 'the compile note')
      panels = wait_for(
          lambda: len(page.find_elements('css selector', '.panel[data-ready]'))
          == 2 and page.find_elements('css selector', '.panel'),
          FIRST_CALL_SECONDS, 'the masks of both models')
      assert [p.find_element('css selector', 'h2').text for p in panels] == [
          'tiny_deepmask_0 deepmask', 'tiny_deepmask_1 deepmask']
      for panel in panels:  # Each model's own time.
        assert panel.find_element('css selector', '.status').text.startswith(
            'network: ')

      # What the model finds on its own (same programs: no new compile).
      image = read_image(image_path)
      found = state.models[0].predictor.propose_encoded([image])[0]
      scores = [float(s) for s in found.scores]
      set_control(page, 'topk', RESULTS)
      set_control(page, 'threshold', 0)
      assert shown_count(page) == len(scores) == RESULTS

      drawn = canvas_pixels(page)
      masked = mask_utils.decode(found.rles).any(axis=2)
      assert drawn.shape == image.shape and masked.any()
      changed = np.any(drawn != image, axis=2)
      assert changed[masked].mean() > 0.9
      assert not changed[~masked].any()  # Boxes are off by default.
      assert hover_text(page, *first_pixel(found.rles[0])).startswith('#1 ')

      # Between two distinct scores: fewer results, no new network call.
      distinct = sorted(set(scores))
      middle = len(distinct) // 2
      threshold = (distinct[middle - 1] + distinct[middle]) / 2
      set_control(page, 'threshold', threshold)
      expected = sum(s >= threshold for s in scores)
      assert 0 < shown_count(page) == expected < RESULTS
      records = downloaded(page)
      assert len(records) == expected
      assert all(r['score'] >= threshold and 'bbox' not in r for r in records)
      assert [model.calls for model in state.models] == [1, 1]
      page.save_screenshot(str(tmp_path / 'viewer.png'))

      notes = tmp_path / 'notes.txt'
      notes.write_text('not an image')
      page.find_element('id', 'file').send_keys(str(notes))
      message = wait_for(
          lambda: page.find_elements('css selector', '#message.error'), 30,
          'the error message')[0].text
      assert message.startswith('notes.txt: cannot read it as an image')
      assert shown_count(page) == expected  # The last image stays.
  finally:
    page.quit()
  print(f'browser test: {time.time() - started:.1f} s; screenshot '
        f'{tmp_path / "viewer.png"}')


def first_pixel(rle) -> tuple:
  """(x, y) of a mask pixel of `rle`."""
  ys, xs = np.nonzero(mask_utils.decode(rle))
  return int(xs[0]), int(ys[0])
