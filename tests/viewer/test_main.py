"""The viewer's command line: bad input fails before serving, in one line."""

import os
import re
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from deepmask_jax.models.store import save_model
from tests.conftest import REPO
from tests.conftest import tiny_model


def start(*args) -> subprocess.Popen:
  env = dict(os.environ, PYTHONPATH=str(REPO))
  return subprocess.Popen(
      [sys.executable, '-m', 'deepmask_jax.viewer', '--platform=cpu', *args],
      cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
      text=True)


def finish(process, timeout=120) -> tuple:
  out, err = process.communicate(timeout=timeout)
  return process.returncode, out, err


@pytest.fixture(scope='module')
def model_dir(tmp_path_factory):
  path = str(tmp_path_factory.mktemp('viewer') / 'tiny_deepmask')
  _, variables, config = tiny_model('deepmask')
  save_model(path, variables, config)
  return path


def test_a_missing_model_fails_in_one_line_before_serving(tmp_path):
  status, out, err = finish(start(f'--model={tmp_path / "nothing"}'))
  assert status == 1 and 'open http' not in out
  lines = err.strip().splitlines()
  assert len(lines) == 1 and lines[0].startswith('error: ')
  assert 'nothing is neither a model directory' in lines[0]


def test_a_port_in_use_fails_in_one_line(model_dir):
  with socket.socket() as taken:
    taken.bind(('127.0.0.1', 0))
    taken.listen()
    port = taken.getsockname()[1]
    status, _, err = finish(start(f'--model={model_dir}', f'--port={port}'))
  assert status == 1
  assert re.fullmatch(rf'error: --host=127.0.0.1 --port={port}: cannot listen '
                      r'there \(.+\) \(traceback: .+\)\n', err)


def test_no_images_found_is_a_usage_error(model_dir, tmp_path):
  status, _, err = finish(start(f'--model={model_dir}',
                                f'--images={tmp_path}/*.jpg'))
  assert status == 1 and 'no image files found for --images=' in err


def test_serves_the_page_on_loopback(model_dir):
  process = start(f'--model={model_dir}', '--port=0')
  try:
    started = time.time()
    lines = []
    while not any(line.startswith('open ') for line in lines):
      line = process.stdout.readline()
      assert line, f'the viewer ended: {process.stderr.read()}'
      lines.append(line)
    url = re.search(r'open (http://\S+)', lines[-1]).group(1)
    assert url.startswith('http://127.0.0.1:')
    with urllib.request.urlopen(url, timeout=30) as page:
      assert page.status == 200 and b'deepmask_jax viewer' in page.read()
    print(f'first page after {time.time() - started:.1f} s')
    assert 'tiny_deepmask (deepmask)' in lines[0]
  finally:
    process.terminate()
    process.wait(timeout=30)
