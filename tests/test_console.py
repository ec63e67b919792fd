"""Errors a user can act on are one line on stderr and exit status 1, in
main (train and eval) and the image CLI; --verbose adds the traceback."""

import os
import subprocess
import sys

import pytest

from tests.conftest import REPO


def run_module(module, *args):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  return subprocess.run([sys.executable, '-m', module, *args], cwd=REPO,
                        env=env, capture_output=True, text=True, timeout=300)


def one_error_line(result) -> str:
  """The only stderr line, checked to be an error line without a traceback."""
  assert result.returncode == 1, result.stdout + result.stderr
  lines = result.stderr.splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error: ')
  assert 'Traceback' not in result.stderr
  return lines[0]


def main(workdir, *flags):
  return run_module('deepmask_jax.main', '--config=configs/demo.py',
                    f'--workdir={workdir}', *flags)


@pytest.mark.parametrize('flags, message', [
    (('--config.mode=bogus',),
     "error: --config.mode must be 'train' or 'eval', got 'bogus'"),
    (('--config.no_such_field=1',),
     "error: --config.no_such_field: the config has no field 'no_such_field'"),
    (('--config=configs/missing.py',),
     'error: --config=configs/missing.py: no such file'),
])
def test_config_errors_are_one_line(tmp_path, flags, message):
  line = one_error_line(main(tmp_path, *flags))
  assert line.startswith(message + ' (traceback: '), line
  log = line.split('(traceback: ')[1].rstrip(')')
  assert 'Traceback (most recent call last)' in open(log).read()


def test_eval_of_a_workdir_without_a_model_is_one_line(tmp_path):
  line = one_error_line(main(tmp_path, '--config.mode=eval'))
  assert str(tmp_path) in line
  assert f'(traceback: {tmp_path / "log.txt"})' in line


def test_verbose_prints_the_traceback_before_the_line(tmp_path):
  result = main(tmp_path, '--config.mode=bogus', '--verbose')
  assert result.returncode == 1
  assert 'Traceback (most recent call last)' in result.stderr
  assert result.stderr.splitlines()[-1].startswith("error: --config.mode must")


def test_propose_with_a_missing_model_is_one_line(tmp_path):
  image = tmp_path / 'a.png'
  from PIL import Image  # pylint: disable=g-import-not-at-top
  Image.new('RGB', (8, 8)).save(image)
  args = (f'--model={tmp_path / "no_model"}', f'--images={image}',
          f'--out={tmp_path / "out"}')
  line = one_error_line(run_module('deepmask_jax.propose', *args))
  assert str(tmp_path / 'no_model') in line
  verbose = run_module('deepmask_jax.propose', *args, '--verbose')
  assert verbose.returncode == 1
  assert 'Traceback (most recent call last)' in verbose.stderr


def cyclic_chain():
  """An error raised `from` a library error that is raised again while the
  first is handled (orbax re-raises a failed save's error on close)."""
  from deepmask_jax.errors import CheckpointError  # pylint: disable=g-import-not-at-top
  library = OSError(28, 'No space left on device')
  try:
    try:
      raise CheckpointError('could not save checkpoint step 2') from library
    except CheckpointError:
      raise library  # pylint: disable=raise-missing-from
  except OSError:
    pass
  assert library.__context__.__cause__ is library  # The cycle.
  return library.__context__


def test_a_cyclic_exception_chain_is_reported_as_one_line(tmp_path, capsys):
  import threading  # pylint: disable=g-import-not-at-top
  from deepmask_jax import console  # pylint: disable=g-import-not-at-top
  error = cyclic_chain()
  outcome = {}
  thread = threading.Thread(daemon=True, target=lambda: outcome.update(
      status=console.report(error, str(tmp_path / 'log.txt'))))
  thread.start()
  thread.join(30)
  assert outcome == {'status': 1}, 'report hangs on a cyclic chain'
  line = capsys.readouterr().err.strip()
  assert line == ('error: could not save checkpoint step 2 (traceback: '
                  f'{tmp_path / "log.txt"})')
  log = (tmp_path / 'log.txt').read_text()
  assert 'No space left on device' in log and 'CheckpointError' in log
