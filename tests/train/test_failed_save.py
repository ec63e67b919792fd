"""A checkpoint that cannot be written ends `main` at once: one line, exit 1.

Real filesystems, not mocks: WORKDIR/checkpoints is a 16 KiB tmpfs (a disk
full at the first save) or a read-only tmpfs, mounted in a private mount
namespace (`unshare -m`) of the training process, so nothing leaks to the
machine. That needs root and util-linux's unshare; elsewhere the tests skip.
The library's tracebacks (orbax, tensorstore) go to WORKDIR/log.txt.
"""

import os
import shlex
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO
from tests.train.test_pipeline_errors import TIMEOUT, TINY_MAIN

MOUNTS = {'disk full': 'size=16k', 'read-only': 'ro,size=1m'}


def _can_mount() -> str:
  """'' where a private tmpfs can be mounted, else why not."""
  if os.geteuid() != 0:
    return 'mounting a tmpfs needs root'
  if shutil.which('unshare') is None:
    return "util-linux's unshare is not installed"
  probe = subprocess.run(['unshare', '-m', 'mount', '-t', 'tmpfs', 'tmpfs',
                          '/mnt'], capture_output=True, text=True, check=False)
  return '' if probe.returncode == 0 else (
      f'cannot mount a tmpfs here: {probe.stderr.strip()}')


def train_on_mount(workdir, options: str):
  checkpoints = workdir / 'checkpoints'
  checkpoints.mkdir(parents=True)
  command = [sys.executable, '-m', 'deepmask_jax.main', f'--workdir={workdir}',
             *TINY_MAIN, '--config.schedule.total_steps=4', '--config.checkpoint_every_steps=2']
  script = (f'mount -t tmpfs -o {options} tmpfs {shlex.quote(str(checkpoints))}'
            f' && exec {shlex.join(command)}')
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # The console must quiet TF itself.
  return subprocess.run(['unshare', '-m', 'sh', '-c', script], cwd=REPO,
                        env=env, capture_output=True, text=True,
                        timeout=TIMEOUT)


@pytest.mark.parametrize('fault', sorted(MOUNTS))
def test_a_failed_save_exits_1_with_one_line(tmp_path, fault):
  reason = _can_mount()
  if reason:
    pytest.skip(reason)
  result = train_on_mount(tmp_path / 'run', MOUNTS[fault])
  assert result.returncode == 1, result.stderr[-3000:]
  lines = result.stderr.splitlines()
  assert len(lines) == 1, result.stderr[-3000:]
  assert lines[0].startswith('error: could not save checkpoint step 2 in ')
  expected = 'No space left on device' if fault == 'disk full' else 'Read-only'
  assert expected in lines[0]
  assert f'(traceback: {tmp_path / "run" / "log.txt"})' in lines[0]
  log = (tmp_path / 'run' / 'log.txt').read_text()
  assert 'Traceback (most recent call last)' in log
