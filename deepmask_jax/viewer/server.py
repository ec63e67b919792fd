"""The viewer's HTTP server: one static page and a small JSON API (stdlib only).

Routes (every answer is the page, its script, a PNG or JSON; an error is
JSON {'error': one line} with a 4xx/5xx status, and the server goes on):

  GET  /                      the page (static/index.html)
  GET  /viewer.js             its script (static/viewer.js)
  GET  /api/state             {'models': [...], 'images': [names]} (describe)
  POST /api/upload            body: an image file's bytes, header X-File-Name
                              (URL-encoded) -> {'image', 'name', 'width',
                              'height'}; 400 with the reason if not an image
  POST /api/listed?index=I    the I-th --images file, same answer
  GET  /api/image?image=K     the image K as a lossless PNG
  GET  /api/result?image=K&model=M   model M's results on image K (cached;
                              predictions.py's module doc)

No route takes a path: the server reads only the files named on its
command line.
"""

import http.server
import json
import os
import socket
import sys
import traceback
import urllib.parse

from deepmask_jax.console import one_line
from deepmask_jax.viewer.predictions import UnreadableImage, ViewerState

STATIC = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'static')
PAGES = {'/': ('index.html', 'text/html; charset=utf-8'),
         '/viewer.js': ('viewer.js', 'text/javascript; charset=utf-8')}
MAX_UPLOAD_BYTES = 256 << 20  # A larger body is refused before it is read.


class ViewerHandler(http.server.BaseHTTPRequestHandler):
  """Answers one request; `self.server.state` is the ViewerState."""

  server_version = 'deepmask_jax-viewer'

  def do_GET(self):  # pylint: disable=invalid-name
    self._answer(self._get)

  def do_POST(self):  # pylint: disable=invalid-name
    self._answer(self._post)

  def _answer(self, route) -> None:
    """Runs `route`; any failure becomes a JSON error, never a dead server."""
    url = urllib.parse.urlsplit(self.path)
    query = {k: v[-1] for k, v in urllib.parse.parse_qs(url.query).items()}
    try:
      route(url.path, query)
    except UnreadableImage as error:
      self._json({'error': str(error)}, 400)
    except (KeyError, ValueError) as error:  # An unknown key, a bad number.
      self._json({'error': one_line(error)}, 400)
    except Exception as error:  # pylint: disable=broad-except
      if self.server.verbose:
        traceback.print_exception(error)
      print(f'viewer: {url.path} failed: {one_line(error)}', file=sys.stderr,
            flush=True)
      self._json({'error': f'the server failed: {one_line(error)}'}, 500)

  def _get(self, path: str, query: dict) -> None:
    state = self.server.state
    if path in PAGES:
      name, kind = PAGES[path]
      with open(os.path.join(STATIC, name), 'rb') as f:
        self._send(f.read(), kind)
    elif path == '/favicon.ico':
      self._send(b'', 'image/x-icon', 204)
    elif path == '/api/state':
      self._json(state.describe())
    elif path == '/api/image':
      self._send(state.png(query['image']), 'image/png')
    elif path == '/api/result':
      self._json(state.result(query['image'], int(query['model'])))
    else:
      self._json({'error': f'no page {path}'}, 404)

  def _post(self, path: str, query: dict) -> None:
    state = self.server.state
    if path == '/api/upload':
      body = self._body()
      if body is None:
        return
      name = urllib.parse.unquote(self.headers.get('X-File-Name', 'upload'))
      self._json(state.add_upload(body, os.path.basename(name) or 'upload'))
    elif path == '/api/listed':
      self._json(state.add_listed(int(query['index'])))
    else:
      self._json({'error': f'no page {path}'}, 404)

  def _body(self) -> bytes | None:
    """The request body, or None once a refusal has been sent."""
    length = int(self.headers.get('Content-Length') or -1)
    if length < 0:
      self._json({'error': 'upload without a Content-Length'}, 411)
    elif length > MAX_UPLOAD_BYTES:
      self._json({'error': f'file of {length} bytes; the viewer takes up to '
                           f'{MAX_UPLOAD_BYTES >> 20} MiB'}, 413)
      self.close_connection = True  # The unread body must not be parsed.
    else:
      return self.rfile.read(length)
    return None

  def _json(self, value, status: int = 200) -> None:
    self._send(json.dumps(value).encode(), 'application/json', status)

  def _send(self, body: bytes, kind: str, status: int = 200) -> None:
    self.send_response(status)
    self.send_header('Content-Type', kind)
    if status != 204:  # No Content has no body, nor a length.
      self.send_header('Content-Length', str(len(body)))
    self.send_header('Cache-Control', 'no-store')
    self.end_headers()
    self.wfile.write(body)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    if self.server.verbose:
      super().log_message(format, *args)


class ViewerServer(http.server.ThreadingHTTPServer):
  """A threaded HTTP server holding the viewer's state."""

  daemon_threads = True  # A browser's open connection never blocks exit.

  def __init__(self, address: tuple, state: ViewerState,
               verbose: bool = False):
    self.state = state
    self.verbose = verbose
    if ':' in address[0]:  # An IPv6 address, e.g. '::1'.
      self.address_family = socket.AF_INET6
    super().__init__(address, ViewerHandler)

  @property
  def url(self) -> str:
    host, port = self.server_address[:2]
    return f'http://{host}:{port}/'
