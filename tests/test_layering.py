"""The import layers: shared code imports no family, a family no other family.

Shared layers (data/, models/, train/, evaluation/, inference/ and the small
top-level helpers) are what every family builds on; the families
(deepmask_jax/families/<name>/) sit above them; the entry points (CLIs,
config schema, weight conversion) and the registry sit on top and may import
any family. The reference helpers of deepmask_jax/testing/ sit there too, but
only tests and experiments/ import them; experiments import nothing from
tests/. Imports inside functions count too.
"""

import ast

import pytest

from tests.conftest import REPO

PACKAGE = REPO / 'deepmask_jax'
FAMILIES = 'deepmask_jax.families'
# Modules allowed to name families: the registry and entry points above them.
TOP = ('deepmask_jax.families', 'deepmask_jax.main', 'deepmask_jax.run',
       'deepmask_jax.evaluate', 'deepmask_jax.propose', 'deepmask_jax.viewer',
       'deepmask_jax.config_schema', 'deepmask_jax.convert',
       'deepmask_jax.testing')
TESTING = 'deepmask_jax.testing'


def module_name(path) -> str:
  parts = path.relative_to(REPO).with_suffix('').parts
  return '.'.join(parts[:-1] if parts[-1] == '__init__' else parts)


def imported_modules(path, prefix: str = 'deepmask_jax') -> set:
  """Dotted names of the `prefix` modules (and names) a file imports."""
  name = module_name(path)
  package = name if path.name == '__init__.py' else name.rpartition('.')[0]
  found = set()
  for node in ast.walk(ast.parse(path.read_text(), str(path))):
    if isinstance(node, ast.Import):
      found.update(alias.name for alias in node.names)
    elif isinstance(node, ast.ImportFrom):
      base = node.module or ''
      if node.level:
        parent = package.split('.')[:len(package.split('.')) - node.level + 1]
        base = '.'.join(parent + ([base] if base else []))
      found.update(f'{base}.{alias.name}' for alias in node.names)
  return {m for m in found if m.split('.')[0] == prefix}


def family_of(module: str):
  """'deepmask' for deepmask_jax.families.deepmask.x; None outside a family
  package (the families' shared modules, base and bound, included)."""
  parts = module.split('.')
  if (module.startswith(FAMILIES + '.') and len(parts) > 2
      and (PACKAGE / 'families' / parts[2]).is_dir()):
    return parts[2]
  return None


def is_top(module: str) -> bool:
  return any(module == top or module.startswith(top + '.') for top in TOP)


MODULES = sorted(PACKAGE.rglob('*.py'))
SHARED = [p for p in MODULES if not is_top(module_name(p))]


def test_shared_layers_are_found():
  assert {'deepmask_jax.models.resnet', 'deepmask_jax.train.trainer',
          'deepmask_jax.inference.images'} <= set(map(module_name, SHARED))


@pytest.mark.parametrize('path', SHARED, ids=module_name)
def test_shared_layers_import_no_family(path):
  wrong = sorted(m for m in imported_modules(path) if m.startswith(FAMILIES))
  assert not wrong, f'{module_name(path)} imports {wrong}'


def test_there_are_two_family_packages():
  packages = {family_of(module_name(p)) for p in MODULES} - {None}
  assert packages == {'deepmask', 'embedmask'}


@pytest.mark.parametrize('path', [p for p in MODULES
                                  if family_of(module_name(p))],
                         ids=module_name)
def test_a_family_imports_no_other_family(path):
  own = family_of(module_name(path))
  imported = imported_modules(path)
  others = [m for m in imported if family_of(m) not in (None, own)]
  # `from deepmask_jax.families import x`: the registry, which loads them all.
  registry = [m for m in imported if m.rpartition('.')[0] == FAMILIES
              and m.rpartition('.')[2] not in ('base', own)]
  assert not others + registry, f'{module_name(path)} imports {others + registry}'


@pytest.mark.parametrize('path', [p for p in MODULES
                                  if not module_name(p).startswith(TESTING)],
                         ids=module_name)
def test_production_code_imports_no_testing_helper(path):
  wrong = sorted(m for m in imported_modules(path) if m.startswith(TESTING))
  assert not wrong, f'{module_name(path)} imports {wrong}'


@pytest.mark.parametrize('path', sorted((REPO / 'experiments').glob('*.py')),
                         ids=lambda p: p.name)
def test_experiments_import_nothing_from_tests(path):
  wrong = sorted(imported_modules(path, 'tests'))
  assert not wrong, f'experiments/{path.name} imports {wrong}'
