"""The commands of README.md and docs/*.md run as written, scaled down.

Every command of the docs is run or excluded with a reason
(tests/doc_runner.py): a new command fails
test_every_command_is_run_or_excluded until it is handled. Run commands go
through a small substitution: each config gets tiny-model flags appended
(doc_runner.OVERRIDES), and the files the docs download or assume are small
stand-ins at the same paths (tests/doc_inputs.py). The commands of one doc
and chain (the demo's, the rest) run in order in one folder, as a reader
would run them; each must exit 0 and write its output.

The chains take minutes of CPU (a training or evaluation command is a
process that imports TensorFlow and JAX and compiles): they are marked
`slow`, and `-m 'not slow'` keeps only the fast checks of the docs.
"""

import os
import resource
import shlex
import time

import pytest

from tests import doc_inputs
from tests import doc_runner
from tests.doc_runner import REPO

COMMANDS = doc_runner.doc_commands()
RUN = doc_runner.to_run(COMMANDS)
CHAINS = sorted({(c.doc, c.chain) for c in RUN})


def test_docs_have_commands_to_run():
  assert {c.doc for c in RUN} >= {'README.md', 'docs/convert.md'}
  assert len(RUN) > 20


def test_every_command_is_run_or_excluded():
  unaccounted = [str(c) for c in COMMANDS if doc_runner.exclusion(c) is None
                 and not doc_runner.runnable(c)]
  assert not unaccounted, ('doc commands neither run nor excluded (see '
                           'tests/doc_runner.py): ' + '; '.join(unaccounted))


def test_every_excluded_command_is_still_in_the_docs():
  stale = set(doc_runner.EXCLUDED_COMMANDS) - {c.text for c in COMMANDS}
  assert not stale, f'excluded commands no doc has any more: {stale}'


def test_ci_runs_the_install_and_test_commands():
  """Their exclusion says CI runs them: .ci/run must, as written."""
  ci = (REPO / '.ci' / 'run').read_text().replace(' --quiet', '')
  for command in COMMANDS:
    if command.argv[0] == 'pip' or command.text == doc_runner.TEST_COMMAND:
      assert command.text in ci, f'{command} is not in .ci/run'


def test_every_documented_config_has_small_overrides():
  """A config without them would train at full size."""
  configs = {doc_runner.flag_value(c.argv, 'config') for c in RUN
             if c.argv[2] == 'deepmask_jax.main'}
  assert configs <= set(doc_runner.OVERRIDES), configs - set(
      doc_runner.OVERRIDES)


def test_layout_table_names_every_config():
  row = next(line for line in (REPO / 'README.md').read_text().splitlines()
             if line.startswith('| `configs/` |'))
  missing = [p.name for p in sorted((REPO / 'configs').glob('*.py'))
             if p.name != '__init__.py' and f'`{p.name}`' not in row]
  assert not missing, f"README's layout table misses configs/{missing}"


def _children_cpu() -> float:
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  return usage.ru_utime + usage.ru_stime


@pytest.mark.slow
@pytest.mark.parametrize('doc, chain', CHAINS)
def test_commands_run_and_write_their_output(doc, chain, tmp_path, request):
  commands = [c for c in RUN if (c.doc, c.chain) == (doc, chain)]
  inputs = doc_runner.stand_ins_read(commands)
  needs_coco = any(doc_inputs.STAND_INS[p] in doc_inputs.NEEDS_COCO_TINY
                   for p in inputs)
  coco_tiny = request.getfixturevalue('coco_tiny') if needs_coco else None
  doc_inputs.write_stand_ins(inputs, tmp_path, coco_tiny)
  os.symlink(REPO / 'configs', tmp_path / 'configs')
  for index, command in enumerate(commands):
    text = doc_runner.filled(command, index)
    line = doc_runner.shell_line(text)
    start, cpu = time.time(), _children_cpu()
    result = doc_runner.run(line, tmp_path)
    print(f'{time.time() - start:6.1f} s, cpu {_children_cpu() - cpu:5.1f} s  '
          f'{command}')
    assert result.returncode == 0, (
        f'{command}\nran: {line}\n{result.stdout[-3000:]}\n'
        f'{result.stderr[-3000:]}')
    missing = doc_runner.missing_output(shlex.split(text), result.stdout,
                                        tmp_path, since=start)
    assert not missing, f'{command}: {missing}\n{result.stdout[-2000:]}'
