r"""Converts a Lua Torch `.t7` file to a model directory.

  python -m deepmask_jax.convert --t7 resnet-50.t7 --out models/resnet50
  python -m deepmask_jax.convert --t7 deepmask/model.t7 --out models/deepmask
  python -m deepmask_jax.convert --t7 model.t7 --inspect   # print the tree

What the file holds (ResNet, nn.DeepMask, nn.SharpMask) is detected. On a
file it cannot convert it prints one line naming the problem and the module
path, exits with status 1, and writes nothing.
"""

import sys

from deepmask_jax import console  # pylint: disable=g-bad-import-order  # First: quiets TF.
from absl import app
from absl import flags

from deepmask_jax.convert.converter import convert_t7
from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.t7_file import load_t7
from deepmask_jax.convert.torch_tree import Node, describe_tree



def define_flags() -> None:
  """The command's flags; defined only when it runs, so that importing `run`
  (tests, other tools) never clashes with another CLI's --out."""
  flags.DEFINE_string('t7', None, 'The .t7 file to convert.')
  flags.DEFINE_string('out', None, 'Model directory to write; must not '
                      'exist yet.')
  flags.DEFINE_boolean('inspect', False, 'Print the module tree of --t7 and '
                       'exit (no --out needed).')
  flags.mark_flag_as_required('t7')


def run(t7_path: str, out_dir: str, inspect: bool = False, stdout=None,
        stderr=None) -> int:
  """The command; returns the exit status."""
  stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
  try:
    if inspect:
      root = Node(load_t7(t7_path), 'file')
      if not root.typename and root.has('model'):
        root = root.child('model')
      print('\n'.join(describe_tree(root)), file=stdout)
      return 0
    if not out_dir:
      print('error: --out is required', file=stderr)
      return 2
    conversion = convert_t7(t7_path, out_dir)
  except (ConversionError, FileExistsError) as e:
    print(f'error: {e}', file=stderr)
    return 1
  print(f'{t7_path}: {conversion.kind} model', file=stdout)
  for note in conversion.notes:
    print(f'  {note}', file=stdout)
  print(f'wrote {out_dir}', file=stdout)
  return 0


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return run(flags.FLAGS.t7, flags.FLAGS.out, flags.FLAGS.inspect)


if __name__ == '__main__':
  define_flags()
  console.run_app(main)
