"""Entry point: `python -m deepmask_jax.main --config=configs/deepmask.py --workdir=DIR`."""

from absl import app, flags, logging
from ml_collections import config_flags

from deepmask_jax import run

FLAGS = flags.FLAGS
flags.DEFINE_string('workdir', None, 'Checkpoints, logs and results go here.')
flags.DEFINE_bool('multihost', False, 'Call jax.distributed.initialize() first '
                  '(one process per host; cluster settings from the environment).')
config_flags.DEFINE_config_file('config', None, 'A configs/*.py file.',
                                lock_config=True)
flags.mark_flags_as_required(['config', 'workdir'])


def main(argv):
  del argv
  if not FLAGS['verbosity'].present:
    # Keep the console to progress lines; orbax logs every save at INFO.
    logging.set_verbosity(logging.WARNING)
  run.run(FLAGS.config, FLAGS.workdir, multihost=FLAGS.multihost)


if __name__ == '__main__':
  app.run(main)
