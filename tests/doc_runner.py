"""The shell commands of README.md and docs/*.md, and how each is run or why not.

`doc_commands()` reads every fenced ```bash block, joins `\\` continuation
lines and drops comments: one `Command` a line; and each inline
`python -m deepmask_jax...` of the prose. Each command is either run
(`python -m deepmask_jax.<cli> ...`, with the small settings of OVERRIDES
appended and the placeholders of PLACEHOLDERS filled in) or excluded, by its
program (EXCLUDED_PROGRAMS) or its text (EXCLUDED_COMMANDS), with the reason.
tests/test_docs_commands.py runs them and checks that nothing is left over.
"""

import dataclasses
import glob
import os
import pathlib
import re
import shlex
import subprocess
import sys

from tests.doc_inputs import STAND_INS, TRUNK

REPO = pathlib.Path(__file__).resolve().parents[1]
RUNNABLE = re.compile(r'python -m deepmask_jax\.(main|propose|convert)\b')
_FENCE = re.compile(r'^([ \t]*)```bash[ \t]*\n(.*?)^\1```', re.M | re.S)
_INLINE = re.compile(r'`(python -m deepmask_jax\.[^`\n]+)`')
_WORD = re.compile(r'(?:\'[^\']*\'|"[^"]*"|[^\s\'"])+')

EXCLUDED_PROGRAMS = {
    'pip': 'installs the package: CI (.ci/run) runs this very command first',
    'wget': 'downloads the real files; the test writes small stand-ins at the '
            'same paths instead (tests/doc_inputs.py)',
    'unzip': 'unpacks the COCO download; the test writes a small COCO layout '
             'at data/coco instead (tests/doc_inputs.py)',
    'mkdir': 'makes the download folders; the stand-ins are written there '
             '(tests/doc_inputs.py)',
    'srun': 'needs a SLURM cluster',
    'export': "sets a multi-host cluster's variables for the command after it",
}
TEST_COMMAND = 'python -m pytest -q -n 2 tests'
EXCLUDED_COMMANDS = {
    TEST_COMMAND: 'the test suite itself: CI (.ci/run) runs this very command',
    'python -m deepmask_jax.main --multihost --config=configs/deepmask.py '
    '--workdir=/shared/runs/deepmask':
        'needs 4 hosts meeting at the exported coordinator; --multihost is '
        'run by tests/train/test_multiprocess.py with two local processes',
    'PYTHONPATH=. python experiments/convert_full_size.py --batch 2':
        'full-size benchmark (minutes of CPU); the full-size ResNet-50 is '
        'converted by tests/convert/test_full_size.py, small trees by the '
        'converter tests',
    "python -m deepmask_jax.viewer --model runs/demo_sharpmask --model "
    "runs/demo_embedmask --images 'data/synthetic/val/*.jpg'":
        'serves a web page until stopped; tests/viewer starts this command '
        '(test_main.py) and drives the page in Chromium '
        '(test_viewer_browser.py)',
    'PYTHONPATH=. python experiments/convert_full_size_pth.py --side 128':
        'full-size benchmark (minutes of CPU); small .pth/.pkl files are '
        'converted and compared by tests/convert/test_pth.py',
}

# Placeholders in the docs' text -> what the test runs instead. `DIR` is a
# new folder each time (the converter never writes into an existing one).
PLACEHOLDERS = {'DIR': 'converted_{index}'}


def _flags(**values):
  return tuple(f'--config.{k}={v}' for k, v in values.items())


def _tuple(values):
  return '(' + ','.join(map(str, values)) + ')'


_SHORT = _flags(batch_size=2, validation_images=1, **{
    'evaluation.results_per_image': 10, 'evaluation.max_images': 2})
_SYNTHETIC = _flags(**{'data.synthetic_train_images': 8,
                       'data.synthetic_val_images': 4,
                       'data.synthetic_image_size': 96})
# DeepMask's trunk is TRUNK through layer3; patches of 32 + 2*16 px; one
# pyramid scale in evaluation and proposals (each scale compiles its own).
_TINY_DEEPMASK = _SHORT + _flags(**{'schedule.total_steps': 2,
    'inference.scale_min': 0, 'inference.scale_max': 0,
    'trunk.stem_width': TRUNK['stem_width'],
    'trunk.widths': _tuple(TRUNK['widths'][:3]),
    'trunk.depths': _tuple(TRUNK['depths'][:3]),
    'head.feature_channels': 8, 'head.embedding': 16, 'head.score_hidden': 16,
    'patch.object_window': 32, 'patch.mask_size': 8, 'patch.label_size': 16})
_TINY_SHARPMASK = _TINY_DEEPMASK + _flags(
    **{'patch.label_size': 32, 'refine.km': 16})  # Labels at the window's size.
_TINY_EMBEDMASK = _SHORT + _flags(**{
    'trunk.stem_width': TRUNK['stem_width'],
    'trunk.widths': _tuple(TRUNK['widths']),
    'trunk.depths': _tuple(TRUNK['depths']),
    'embedmask.fpn_channels': 8, 'embedmask.num_convs': 1,
    'detection.min_size': 64, 'detection.max_size': 64,
    'schedule.total_steps': 2, 'schedule.warmup_steps': 1})
# --config file -> flags appended to a `deepmask_jax.main` command (later
# flags win, so a field the doc sets itself must not be set here).
OVERRIDES = {
    'configs/deepmask.py': _TINY_DEEPMASK,
    'configs/sharpmask.py': _TINY_SHARPMASK,
    'configs/embedmask.py': _TINY_EMBEDMASK,
    'configs/demo.py': _TINY_DEEPMASK + _SYNTHETIC,
    'configs/demo_sharpmask.py': _TINY_SHARPMASK + _SYNTHETIC,
    'configs/demo_embedmask.py': _TINY_EMBEDMASK + _SYNTHETIC,
}


@dataclasses.dataclass(frozen=True)
class Command:
  doc: str  # Relative to the repository: 'README.md', 'docs/convert.md'.
  line: int  # Line of the command's first line in the doc.
  text: str  # Continuations joined, comment dropped, spaces collapsed.

  @property
  def argv(self) -> list:
    return shlex.split(self.text)

  @property
  def chain(self) -> str:
    """Commands of one doc and chain run in order in one folder."""
    return 'demo' if '--config=configs/demo' in self.text else 'main'

  def __str__(self):
    return f'{self.doc}:{self.line}: {self.text}'


def _shell_words(text: str) -> list:
  """The shell words of `text` as written (quotes kept), up to a comment."""
  words = []
  for match in _WORD.finditer(text):
    if match.group().startswith('#'):
      break
    words.append(match.group())
  return words


def _block_commands(doc, block, first_line):
  """Commands of one block's text; `first_line` is the block's first line."""
  lines = block.split('\n')
  index = 0
  while index < len(lines):
    start, text = index, lines[index]
    while text.rstrip().endswith('\\') and index + 1 < len(lines):
      index += 1
      text = text.rstrip()[:-1] + ' ' + lines[index]
    index += 1
    words = _shell_words(text)
    if words:
      yield Command(doc, first_line + start, ' '.join(words))


def doc_commands(repo=REPO) -> list:
  """Every command of README.md and docs/*.md, in order: the lines of the
  ```bash blocks and the inline `python -m deepmask_jax...` of the prose."""
  docs = ['README.md'] + sorted(
      str(p.relative_to(repo)) for p in (repo / 'docs').glob('*.md'))
  commands = []
  for doc in docs:
    text = (repo / doc).read_text()
    found = [Command(doc, text.count('\n', 0, m.start()) + 1, m.group(1))
             for m in _INLINE.finditer(text)]
    for match in _FENCE.finditer(text):
      first_line = text.count('\n', 0, match.start(2)) + 1
      found += _block_commands(doc, match.group(2), first_line)
    commands += sorted(found, key=lambda c: c.line)
  return commands


def exclusion(command: Command):
  """Why the command is not run, or None when it is."""
  if command.text in EXCLUDED_COMMANDS:
    return EXCLUDED_COMMANDS[command.text]
  return EXCLUDED_PROGRAMS.get(command.argv[0])


def runnable(command: Command) -> bool:
  return exclusion(command) is None and bool(RUNNABLE.match(command.text))


def to_run(commands) -> list:
  """The runnable commands, each once: a command already in an earlier doc
  (or earlier in its own) runs there only."""
  first = {}
  for command in commands:
    first.setdefault(command.text, command)
  return [c for c in commands if runnable(c) and first[c.text] is c]


# Inputs a config reads without the command line naming them.
CONFIG_INPUTS = {'configs/deepmask.py': 'data/coco',
                 'configs/sharpmask.py': 'data/coco',
                 'configs/embedmask.py': 'data/coco'}


def _names(word: str, path: str) -> bool:
  """Whether a command word names `path` (or a file in it)."""
  return (word == path or word.startswith(f'{path}/')
          or word.endswith(f'={path}'))


def stand_ins_read(commands) -> list:
  """The STAND_INS the commands read: named in them or read by their
  config, and not written by one of them (--out, --workdir)."""
  written = {flag_value(c.argv, flag) for c in commands
             for flag in ('out', 'workdir')}
  named = {path for path in STAND_INS for c in commands
           if any(_names(word, path) for word in c.argv)}
  named |= {CONFIG_INPUTS[flag_value(c.argv, 'config')] for c in commands
            if flag_value(c.argv, 'config') in CONFIG_INPUTS}
  return sorted(named - written)


def filled(command: Command, index: int) -> str:
  """The command with its placeholders filled in (`index`: its position)."""
  return ' '.join(PLACEHOLDERS.get(w, w).format(index=index)
                  for w in _shell_words(command.text))


def shell_line(text: str) -> str:
  """`text` (a command) as the test runs it: with this Python, and for
  `deepmask_jax.main` with its config's OVERRIDES appended."""
  words = _shell_words(text)
  words[0] = shlex.quote(sys.executable)
  if words[2] == 'deepmask_jax.main':
    words += map(shlex.quote, OVERRIDES.get(
        flag_value(shlex.split(text), 'config'), ()))
  return ' '.join(words)


def flag_value(argv, name):
  """The value of --name=V or --name V in argv (the last one), or None."""
  value = None
  for i, word in enumerate(argv):
    if word.startswith(f'--{name}='):
      value = word.split('=', 1)[1]
    elif word == f'--{name}' and i + 1 < len(argv):
      value = argv[i + 1]
  return value


def run(line: str, cwd, timeout=600) -> subprocess.CompletedProcess:
  """`line` in bash, in `cwd`, with this checkout's package, on one CPU
  device (the docs' batch sizes need not divide by the tests' 8)."""
  env = dict(os.environ, PYTHONPATH=str(REPO),
             XLA_FLAGS='--xla_force_host_platform_device_count=1')
  return subprocess.run(['bash', '-c', line], cwd=cwd, env=env, text=True,
                        capture_output=True, timeout=timeout, check=False)


def _written_since(paths, since: float) -> bool:
  return any(os.path.getmtime(p) >= since for p in paths)


def missing_output(argv, stdout: str, cwd, since: float) -> str:
  """What the command should have written (after time `since`) but did not;
  '' when it did."""
  cwd = pathlib.Path(cwd)
  module = argv[2]
  if module == 'deepmask_jax.convert' and '--inspect' in argv:
    return '' if stdout.strip() else 'nothing printed'
  if module == 'deepmask_jax.convert':
    expected = cwd / flag_value(argv, 'out') / 'config.json'
  elif module == 'deepmask_jax.propose':
    expected = cwd / flag_value(argv, 'out') / 'proposals.json'
  elif flag_value(argv, 'config.mode') == 'eval':
    expected = cwd / flag_value(argv, 'workdir') / 'eval_*' / 'evaluation.json'
  else:  # Training: a checkpoint step.
    expected = cwd / flag_value(argv, 'workdir') / 'checkpoints' / '[0-9]*'
  found = glob.glob(str(expected))
  return '' if _written_since(found, since) else f'{expected} not written'
