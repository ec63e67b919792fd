"""The viewer's HTTP routes on a loopback port, with fake models."""

import io
import json
import urllib.error
import urllib.request

from PIL import Image

from deepmask_jax.viewer import server as server_module
from deepmask_jax.viewer.driver import serving
from deepmask_jax.viewer.predictions import ViewerState
from tests.viewer.conftest import fake_model


def request(server, path, data=None, headers=None):
  """(status, body bytes) of a GET (or a POST of `data`)."""
  call = urllib.request.Request(server.url.rstrip('/') + path, data=data,
                                headers=headers or {})
  try:
    with urllib.request.urlopen(call, timeout=30) as response:
      return response.status, response.read()
  except urllib.error.HTTPError as error:
    return error.code, error.read()


def png(size=(24, 16)) -> bytes:
  buffer = io.BytesIO()
  Image.new('RGB', size, 'blue').save(buffer, format='PNG')
  return buffer.getvalue()


def test_serves_the_page_and_its_script():
  with serving(ViewerState([fake_model()])) as server:
    status, page = request(server, '/')
    assert status == 200 and b'<script src="viewer.js">' in page
    status, script = request(server, '/viewer.js')
    assert status == 200 and b'function rleRuns' in script
    status, body = request(server, '/static/../__main__.py')
    assert status == 404 and 'no page' in json.loads(body)['error']


def test_upload_then_results_once_per_model():
  model = fake_model()
  with serving(ViewerState([model])) as server:
    status, body = request(server, '/api/upload', png(), {'X-File-Name':
                                                          'a%20b.png'})
    info = json.loads(body)
    assert status == 200 and info['name'] == 'a b.png'
    assert (info['width'], info['height']) == (24, 16)
    for _ in range(2):
      status, body = request(server, f'/api/result?image={info["image"]}'
                             '&model=0')
      assert status == 200 and len(json.loads(body)['segm']) == 4
    assert model.predictor.calls == 1
    status, body = request(server, f'/api/image?image={info["image"]}')
    assert Image.open(io.BytesIO(body)).size == (24, 16)


def test_a_file_that_is_not_an_image_gets_a_message_and_the_server_goes_on():
  with serving(ViewerState([fake_model()])) as server:
    status, body = request(server, '/api/upload', b'hello',
                           {'X-File-Name': 'notes.txt'})
    assert status == 400
    assert json.loads(body)['error'].startswith(
        'notes.txt: cannot read it as an image')
    assert request(server, '/api/state')[0] == 200


def test_bad_requests_are_answered_with_a_reason(monkeypatch):
  monkeypatch.setattr(server_module, 'MAX_UPLOAD_BYTES', 10)
  with serving(ViewerState([fake_model()])) as server:
    status, body = request(server, '/api/upload', b'x' * 11)
    assert status == 413 and 'takes up to' in json.loads(body)['error']
    status, body = request(server, '/api/result?image=nope&model=0')
    assert status == 400 and 'unknown image' in json.loads(body)['error']


def test_a_failing_model_is_an_error_message_not_a_dead_server(capsys):
  model = fake_model()
  model.predictor.propose_encoded = lambda images: 1 / 0
  with serving(ViewerState([model])) as server:
    key = json.loads(request(server, '/api/upload', png())[1])['image']
    status, body = request(server, f'/api/result?image={key}&model=0')
    assert status == 500 and 'division by zero' in json.loads(body)['error']
    assert request(server, '/')[0] == 200
  assert 'division by zero' in capsys.readouterr().err
