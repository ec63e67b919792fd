r"""Look at the masks of any model in a browser.

    python -m deepmask_jax.viewer --model runs/sharpmask [--model runs/em ...] \
        [--images 'photos/*.jpg'] [--port 7860] [--host 127.0.0.1] \
        [--num_proposals 100] [--platform cpu]

Each --model is a model directory or a training workdir of any family
(converted models included), loaded before the server starts: a path that
holds no model stops the command with one line. --images lists files the
page offers to pick (an image, a folder or a glob, as `propose` reads it);
any image can be uploaded too. The server listens on 127.0.0.1 unless --host
says otherwise; open the printed address. What the page does: the package
doc (deepmask_jax/viewer/__init__.py).
"""

from deepmask_jax import console  # pylint: disable=g-bad-import-order  # First: quiets TF.
from absl import app, flags
import jax

from deepmask_jax.data.coco_report import counted
from deepmask_jax.errors import InputError
from deepmask_jax.inference.images import find_images
from deepmask_jax.viewer.predictions import ViewerState, load_models
from deepmask_jax.viewer.server import ViewerServer

FLAGS = flags.FLAGS
flags.DEFINE_multi_string('model', None, 'Model directory or training '
                          'workdir; repeat for panels side by side.')
flags.DEFINE_string('images', '', 'Images the page offers: an image, a '
                    'folder of images or a glob.')
flags.DEFINE_integer('port', 7860, 'Port to listen on (0: any free port).')
flags.DEFINE_string('host', '127.0.0.1', 'Address to listen on (the default '
                    'serves this machine only).')
flags.DEFINE_integer('num_proposals', 100, 'Results per image and model, '
                     "the most the page's top-K can show.")
flags.DEFINE_string('platform', '', "JAX platform, e.g. 'cpu' ('' = JAX's "
                    'default: the GPU if there is one).')


def open_server(host: str, port: int, state: ViewerState,
                verbose: bool) -> ViewerServer:
  """The server bound to (host, port); InputError if it cannot listen there."""
  try:
    return ViewerServer((host, port), state, verbose)
  except OSError as error:
    reason = error.strerror or str(error)
    raise InputError(f'--host={host} --port={port}: cannot listen there '
                     f'({reason})') from error


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  if not FLAGS.model:
    raise app.UsageError('--model is required')
  if FLAGS.platform:  # Before any computation initialises a backend.
    jax.config.update('jax_platforms', FLAGS.platform)
  paths = find_images(FLAGS.images) if FLAGS.images else []
  if FLAGS.images and not paths:
    raise app.UsageError(f'no image files found for --images={FLAGS.images}')
  if FLAGS.num_proposals < 1:
    raise app.UsageError('--num_proposals must be at least 1')
  models = load_models(FLAGS.model,
                       results_per_image=FLAGS.num_proposals)
  server = open_server(FLAGS.host, FLAGS.port, ViewerState(models, paths),
                       console.is_verbose())
  names = ', '.join(f'{m.name} ({m.family})' for m in models)
  print(f'viewer: {names}; {counted(len(paths), "listed image")}', flush=True)
  print(f'open {server.url} (Ctrl-C stops the server)', flush=True)
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    print('viewer stopped', flush=True)
  finally:
    server.server_close()


if __name__ == '__main__':
  console.run_app(main)
