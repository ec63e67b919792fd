"""Config fields renamed so that one field has one meaning across families.

Old names keep working for one release: a config that sets one (a configs/*.py
file, a `--config.x=` override, or the config stored in a workdir or model
directory written before the rename) has it moved to the new name, and one
line names what was moved. The schema keeps each old name as an unset
placeholder (None) so that command-line overrides of it are accepted.

  old name                          new name
  inference.num_proposals           inference.results_per_image
  evaluation.num_proposals          evaluation.results_per_image
  embedmask.detections_per_image    embedmask.results_per_image
  eval_batches                      validation_images (DeepMask/SharpMask
                                    counted batches: x batch_size)
"""

import ml_collections

# old dotted name -> new dotted name.
RENAMES = {
    'inference.num_proposals': 'inference.results_per_image',
    'evaluation.num_proposals': 'evaluation.results_per_image',
    'embedmask.detections_per_image': 'embedmask.results_per_image',
    'eval_batches': 'validation_images',
}
# Families whose old `eval_batches` counted batches of config.batch_size.
BATCH_COUNTED = ('deepmask', 'sharpmask')
_PRINTED = set()


def _parent_and_leaf(config, dotted: str):
  """(sub-dict holding the field, field name); sub-dict None if absent."""
  *parents, leaf = dotted.split('.')
  for name in parents:
    config = config.get(name, None) if config is not None else None
  return config, leaf


def _converted(config, old: str, value):
  if old == 'eval_batches' and config.get('model', None) in BATCH_COUNTED:
    return int(value) * int(config.batch_size)
  return value


def apply_renames(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
  """Moves every old field `config` sets to its new name, in place.

  An old field that is None (the schema's placeholder) is only removed. When
  the new field is set too (it differs from the schema's default: say a
  config file sets the old name and the command line the new one), the new
  value wins. One deprecation line is printed per distinct set of moves (once
  per process). Returns `config`.
  """
  from deepmask_jax.config_schema import get_config  # pylint: disable=g-import-not-at-top
  defaults = get_config()
  moved = []
  for old, new in RENAMES.items():
    holder, leaf = _parent_and_leaf(config, old)
    if holder is None or leaf not in holder:
      continue
    value = holder[leaf]
    with holder.unlocked():
      del holder[leaf]
    if value is None:
      continue
    target, new_leaf = _parent_and_leaf(config, new)
    default_holder, _ = _parent_and_leaf(defaults, new)
    if (default_holder is not None and new_leaf in target
        and target[new_leaf] != default_holder.get(new_leaf, None)):
      moved.append(f'{old} ignored ({new} is set)')
      continue
    with target.unlocked():
      target[new_leaf] = _converted(config, old, value)
    moved.append(f'{old} -> {new}')
  if moved:
    line = ('warning: deprecated config names (they go in the next release): '
            + ', '.join(moved))
    if line not in _PRINTED:
      _PRINTED.add(line)
      print(line, flush=True)
  return config
