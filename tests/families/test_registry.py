"""The family registry, and the shared layers naming no family."""

import re
import subprocess
import sys

import pytest

from deepmask_jax import families
from deepmask_jax.families.base import Family
from tests.conftest import REPO, tiny_config

# Files shared by every family: they must work through families.Family alone.
SHARED_FILES = ('deepmask_jax/train/trainer.py', 'deepmask_jax/train/parallel.py',
                'deepmask_jax/train/checkpointing.py',
                'deepmask_jax/train/train_step.py',
                'deepmask_jax/train/optimizer.py', 'deepmask_jax/main.py',
                'deepmask_jax/run.py', 'deepmask_jax/evaluate.py',
                'deepmask_jax/propose.py', 'deepmask_jax/models/store.py')
FAMILY_NAME = re.compile(r'(?<![\w.])(deep_?mask|sharp_?mask|embed_?mask)(?!_jax)',
                         re.IGNORECASE)


def test_every_family_is_registered_under_its_name():
  for name in ('deepmask', 'sharpmask'):
    family = families.get_family(name)
    assert isinstance(family, Family) and family.name == name


def test_unknown_family_is_one_clear_error():
  with pytest.raises(ValueError, match="config.model must be one of"):
    families.get_family('maskrcnn')


@pytest.mark.parametrize('path', SHARED_FILES)
def test_shared_layers_name_no_family(path):
  source = (REPO / path).read_text()
  code = re.sub(r'(?s)""".*?"""|#[^\n]*', '', source)  # Docs may name them.
  assert not FAMILY_NAME.findall(code), path


def test_deepmask_groups_cover_its_trainable_parameters():
  config = tiny_config()
  family = families.get_family('deepmask')
  variables = family.init_variables(config, family.build_model(config))
  optimization = family.optimization(config, variables['params'])
  covered = {p.split('/')[0] for group in optimization.groups.values()
             for p in group}
  assert covered == set(variables['params'])


def test_package_has_no_import_cycles():
  tool = REPO.parent / 'shared' / 'tools' / 'import_cycles.py'
  if not tool.exists():
    pytest.skip(f'{tool} not found (shared tools sit beside the repository)')
  result = subprocess.run([sys.executable, str(tool), 'deepmask_jax'],
                          cwd=REPO, capture_output=True, text=True, check=True)
  assert result.stdout.startswith('no import cycles'), result.stdout
