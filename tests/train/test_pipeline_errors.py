"""An input pipeline that fails ends the run at once, as one line, exit 1.

In process: train_and_evaluate with a tf.data source that raises at step 2
ends (in a thread, with a join timeout) with a PipelineError naming the step.
As a command: `python -m deepmask_jax.main` with that source (through
tests/train/failing_pipeline_main.py) prints one line, exits 1 and the
process ends; the quiet terminal holds no library log line, --verbose does.
"""

import functools
import os
import subprocess
import sys
import threading

import pytest

from deepmask_jax.data import feed
from deepmask_jax.families import bind
from deepmask_jax.train.trainer import train_and_evaluate
from tests.conftest import REPO
from tests.train import fake_batches
from tests.train import failing_pipeline_main
from tests.train.run_training import resume_config

TIMEOUT = 240  # Seconds; a run that hangs never ends at all.
TINY_MAIN = ('--config=configs/demo.py', '--config.trunk.stem_width=8',
             '--config.trunk.widths=(4,8,8)', '--config.head.feature_channels=8',
             '--config.head.embedding=16', '--config.head.score_hidden=16',
             '--config.patch.object_window=64', '--config.patch.label_size=32',
             '--config.batch_size=2', '--config.schedule.total_steps=8',
             '--config.log_every_steps=1')


def test_error_at_step_n_of_a_tf_data_stage_ends_training(tmp_path):
  outcome = {}
  config = resume_config(8)
  config.batch_size = 8  # The 8 virtual devices of tests/conftest.py.
  sources = fake_batches.sources(config)
  sources['train_source'] = functools.partial(
      failing_pipeline_main.tf_data_source(2), config)

  def train():
    try:
      train_and_evaluate(bind(config), str(tmp_path), **sources)
    except Exception as error:  # pylint: disable=broad-except
      outcome['error'] = error

  thread = threading.Thread(target=train, daemon=True)
  thread.start()
  thread.join(TIMEOUT)
  assert not thread.is_alive(), f'training still runs after {TIMEOUT} s'
  error = outcome.get('error')
  assert isinstance(error, feed.PipelineError), repr(error)
  assert str(error) == ('training batches failed at step 2: ValueError: '
                        f'{failing_pipeline_main.FAILURE} at step 2')
  assert not (tmp_path / 'checkpoints').exists()  # Nothing saved, no folder.


def failing_main(workdir, kind, *flags):
  env = dict(os.environ, XLA_FLAGS='--xla_force_host_platform_device_count=1')
  env.pop('TF_CPP_MIN_LOG_LEVEL', None)  # The console must quiet TF itself.
  return subprocess.run(
      [sys.executable, '-m', 'tests.train.failing_pipeline_main', '1', kind,
       f'--workdir={workdir}', *TINY_MAIN, *flags],
      cwd=REPO, env=env, capture_output=True, text=True, timeout=TIMEOUT)


@pytest.mark.parametrize('kind', ['tf_data', 'generator'])
def test_main_with_a_failing_pipeline_prints_one_line_and_exits_1(tmp_path, kind):
  result = failing_main(tmp_path / 'run', kind)
  assert result.returncode == 1, result.stderr
  lines = result.stderr.splitlines()
  assert len(lines) == 1, result.stderr
  assert lines[0].startswith('error: training batches failed at step 1: ')
  assert f'{failing_pipeline_main.FAILURE} at step 1' in lines[0]
  assert f'traceback: {tmp_path / "run" / "log.txt"}' in lines[0]
  log = (tmp_path / 'run' / 'log.txt').read_text()
  assert 'Traceback (most recent call last)' in log
  assert 'PipelineError' in log


def test_verbose_shows_the_traceback_and_library_logs(tmp_path):
  result = failing_main(tmp_path / 'run', 'tf_data', '--verbose')
  assert result.returncode == 1
  assert 'Traceback (most recent call last)' in result.stderr
  assert 'checkpoint_manager.py' in result.stderr  # orbax's INFO lines.
  assert result.stderr.splitlines()[-1].startswith(
      'error: training batches failed at step 1')
