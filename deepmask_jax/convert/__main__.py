r"""Converts released weights (`.t7`, `.pth`, `.pkl`) to a model directory.

  python -m deepmask_jax.convert --input resnet-50.t7 --out models/resnet50
  python -m deepmask_jax.convert --input deepmask/model.t7 --out models/deepmask
  python -m deepmask_jax.convert --input embed_mask_R50_1x.pth --out models/em_r50
  python -m deepmask_jax.convert --input R-50.pkl --out models/msra_r50
  python -m deepmask_jax.convert --input model.t7 --inspect   # print the tree

`--t7` is the older name of `--input`. The format is read from the file's
first bytes, whatever its name; what it holds (ResNet, nn.DeepMask,
nn.SharpMask, an EmbedMask checkpoint, a Detectron ResNet) is detected. On a
file it cannot convert it prints one line naming the problem and where (the
module path or the key), exits with status 1, and writes nothing.
"""

import sys

from deepmask_jax import console  # pylint: disable=g-bad-import-order  # First: quiets TF.
from absl import app
from absl import flags

from deepmask_jax.convert.converter import convert
from deepmask_jax.convert.errors import ConversionError
from deepmask_jax.convert.pickle_files import read_pickled_weights, sniff
from deepmask_jax.convert.t7_file import load_t7
from deepmask_jax.convert.torch_tree import Node, describe_tree


def define_flags() -> None:
  """The command's flags; defined only when it runs, so that importing `run`
  (tests, other tools) never clashes with another CLI's --out."""
  flags.DEFINE_string('input', None, 'The file to convert: .t7, PyTorch '
                      '.pth (zip or legacy) or Detectron .pkl (by content).')
  flags.DEFINE_alias('t7', 'input')
  flags.DEFINE_string('out', None, 'Model directory to write; must not '
                      'exist yet.')
  flags.DEFINE_boolean('inspect', False, 'Print the module tree (.t7) or the '
                       'tensor names and shapes (.pth/.pkl) of --input and '
                       'exit (no --out needed).')
  flags.mark_flag_as_required('input')


def _describe(path: str) -> list:
  """Lines describing the file: the .t7 module tree, or name and shape of
  each pickled tensor."""
  if sniff(path) == 't7':
    root = Node(load_t7(path), 'file')
    if not root.typename and root.has('model'):
      root = root.child('model')
    return describe_tree(root)
  _, obj = read_pickled_weights(path)
  lines = []

  def walk(value, name):
    if isinstance(value, dict):
      for key, child in value.items():
        walk(child, f'{name}.{key}' if name else str(key))
    elif hasattr(value, 'shape'):
      lines.append(f'{name} {value.dtype}{list(value.shape)}')
    else:
      lines.append(f'{name} {type(value).__name__}')
  walk(obj, '')
  return lines


def run(path: str, out_dir: str, inspect: bool = False, stdout=None,
        stderr=None) -> int:
  """The command; returns the exit status."""
  stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
  try:
    if inspect:
      print('\n'.join(_describe(path)), file=stdout)
      return 0
    if not out_dir:
      print('error: --out is required', file=stderr)
      return 2
    conversion = convert(path, out_dir)
  except (ConversionError, FileExistsError) as e:
    print(f'error: {e}', file=stderr)
    return 1
  print(f'{path}: {conversion.kind} model', file=stdout)
  for note in conversion.notes:
    print(f'  {note}', file=stdout)
  print(f'wrote {out_dir}', file=stdout)
  return 0


def main(argv):
  if len(argv) > 1:
    raise app.UsageError(f'unexpected arguments: {argv[1:]}')
  return run(flags.FLAGS.input, flags.FLAGS.out, flags.FLAGS.inspect)


if __name__ == '__main__':
  define_flags()
  console.run_app(main)
