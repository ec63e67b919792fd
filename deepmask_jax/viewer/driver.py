"""Drive the viewer from Python: a server thread and headless Chromium.

For the viewer's tests and the experiments that time the page or take its
screenshot (experiments/viewer_timing.py, viewer_screenshot.py). The
browser needs Debian's `chromium` and `chromium-driver` and the `selenium`
package (the `test` extra); `browser()` raises NoBrowser naming what is
missing. Nothing here is imported by the viewer itself.
"""

import contextlib
import json
import shutil
import threading
import time

from deepmask_jax.viewer.predictions import ViewerState
from deepmask_jax.viewer.server import ViewerServer


class NoBrowser(RuntimeError):
  """Headless Chromium cannot run here; the message says what is missing."""


@contextlib.contextmanager
def serving(state: ViewerState):
  """A ViewerServer on a free loopback port, in a thread; yields it."""
  server = ViewerServer(('127.0.0.1', 0), state)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield server
  finally:
    server.shutdown()
    server.server_close()
    thread.join(timeout=10)


def browser(width: int = 1280, height: int = 900):
  """A headless Chromium WebDriver with a width x height window (CSS px).

  Raises NoBrowser if selenium, chromium or chromedriver is missing or
  Chromium does not start.
  """
  try:
    from selenium import webdriver  # pylint: disable=g-import-not-at-top
    from selenium.common.exceptions import WebDriverException  # pylint: disable=g-import-not-at-top
    from selenium.webdriver.chrome.service import Service  # pylint: disable=g-import-not-at-top
  except ImportError as error:
    raise NoBrowser('selenium is not installed (pip install -e ".[test]")'
                    ) from error
  chromium = shutil.which('chromium') or shutil.which('chromium-browser')
  driver = shutil.which('chromedriver')
  if not chromium or not driver:
    raise NoBrowser('no headless browser: needs Debian\'s chromium and '
                    'chromium-driver (apt-get install chromium '
                    'chromium-driver)')
  options = webdriver.ChromeOptions()
  options.binary_location = chromium
  for flag in ('--headless=new', '--no-sandbox', '--disable-dev-shm-usage',
               f'--window-size={width},{height}'):
    options.add_argument(flag)
  try:
    return webdriver.Chrome(service=Service(driver), options=options)
  except WebDriverException as error:
    raise NoBrowser(f'chromium did not start: {error.msg}') from error


def wait_for(check, timeout: float, what: str):
  """The first truthy value of check(), polled; TimeoutError naming `what`."""
  end = time.time() + timeout
  while time.time() < end:
    value = check()
    if value:
      return value
    time.sleep(0.1)
  raise TimeoutError(f'timed out after {timeout} s waiting for {what}')


def set_control(page, name: str, value) -> None:
  """Moves a range input as a user would (an 'input' event)."""
  page.execute_script(
      "const c = document.getElementById(arguments[0]);"
      "c.value = arguments[1]; c.dispatchEvent(new Event('input'));",
      name, str(value))


def hover_text(page, x: int, y: int) -> str:
  """The tooltip over image pixel (x, y) of the first panel ('' if none).

  The tooltip stays shown (the page's own mousemove handler placed it).
  """
  return page.execute_script(
      "const c = document.querySelector('.panel canvas');"
      "const b = c.getBoundingClientRect();"
      "c.dispatchEvent(new MouseEvent('mousemove', {"
      "  clientX: b.left + (arguments[0] + 0.5) * b.width / c.width,"
      "  clientY: b.top + (arguments[1] + 0.5) * b.height / c.height}));"
      "const t = document.getElementById('tooltip');"
      "return t.hidden ? '' : t.textContent;", x, y)


def downloaded(page) -> list:
  """The records the first panel's 'results JSON' link downloads."""
  text = page.execute_async_script(
      "const done = arguments[arguments.length - 1];"
      "fetch(document.querySelector('.panel .download').href)"
      "  .then((r) => r.text()).then(done);")
  return json.loads(text)


def upload(page, path: str, timeout: float) -> float:
  """Seconds from choosing the file `path` to every panel's drawn masks.

  Waits for the page's panels first (its script adds them once started).
  Raises RuntimeError with a panel's message if its network call failed.
  """
  wait_for(lambda: page.find_elements('css selector', '.panel'), 30,
           'the model panels')
  page.execute_script(
      "document.querySelectorAll('.panel').forEach("
      "(p) => delete p.dataset.ready)")
  started = time.perf_counter()
  page.find_element('id', 'file').send_keys(path)

  def drawn():
    failed = page.find_elements('css selector', '.panel .status.error')
    if failed:
      raise RuntimeError(f'the viewer failed on {path}: {failed[0].text}')
    panels = page.find_elements('css selector', '.panel')
    ready = page.find_elements('css selector', '.panel[data-ready]')
    return panels and len(ready) == len(panels)

  wait_for(drawn, timeout, f'the masks of {path}')
  return time.perf_counter() - started
