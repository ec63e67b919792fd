"""Entry point: `python -m deepmask_jax.main --config=configs/deepmask.py --workdir=DIR`.

Prints progress, warnings about the data and the figures; library log lines
only with --verbose. An error in the data, the config or a file is one line
on stderr and exit status 1, its traceback appended to WORKDIR/log.txt
(deepmask_jax/console.py), where library output (TensorFlow's C++ notices,
orbax's tracebacks) goes too unless --verbose.
"""

import os

from deepmask_jax import console  # pylint: disable=g-bad-import-order  # First: quiets TF.
from absl import flags
from ml_collections import config_flags

from deepmask_jax.errors import InputError

LOG_FILE = 'log.txt'
FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Checkpoints, logs and results go here.')
flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() first '
                  '(one process per host; cluster settings from the environment).')
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.',
                                lock_config=True)


def loaded_config():
  """FLAGS.config; a config file that cannot be loaded is an InputError."""
  path = config_flags.get_config_filename(FLAGS['config'])
  if not os.path.isfile(path):
    raise InputError(f'--config={path}: no such file')
  try:
    return FLAGS.config
  except OSError as error:  # ml_collections' report of a failed load.
    raise InputError(f'--config={path}: {console.one_line(error)}') from error


def log_path() -> str:
  """Where tracebacks and library output go: WORKDIR/log.txt.

  Training creates the workdir here (it writes there anyway); evaluation
  needs one that exists, and without it the log is a temporary file.
  """
  try:
    training = FLAGS.config.mode == 'train'
  except Exception:  # pylint: disable=broad-except  # Reported by main().
    training = False
  if training:
    os.makedirs(FLAGS.workdir, exist_ok=True)
  if not os.path.isdir(FLAGS.workdir):
    return console.temporary_log()
  return os.path.join(FLAGS.workdir, LOG_FILE)


def main(argv):
  del argv
  from deepmask_jax import run  # pylint: disable=g-import-not-at-top  # After console's setup.
  run.run(loaded_config(), FLAGS.workdir, multihost=FLAGS.multihost)


def run_main() -> None:
  """The command. Its flags become required only here, so that importing this
  module (tests, tools) never makes another program's flag parsing fail."""
  flags.mark_flags_as_required(['config', 'workdir'])
  console.run_app(main, log_path=log_path)


if __name__ == '__main__':
  run_main()
