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
  solver.bias_lr_factor             embedmask.bias_lr_factor
  solver.weight_decay_bias          embedmask.weight_decay_bias

The learning-rate schedule is one section in steps, `config.schedule`
(train/optimizer.py step_schedule). Its old names are converted into it, in
the family that read them (the other family's are dropped, named):

  DeepMask / SharpMask              schedule.
  maxload (batches per epoch)       epoch_steps (the unit of the two below;
                                    the config's own epoch_steps if unset)
  num_epochs                        total_steps = num_epochs x maxload
  lr_boundaries_epochs              boundaries = epochs x maxload
  learning_rates                    learning_rates
  EmbedMask (solver.)
  max_iter                          total_steps
  steps                             boundaries
  base_lr, gamma                    learning_rates = base_lr x gamma^k
  warmup_iters, warmup_factor       warmup_steps, warmup_factor
  reference_batch                   reference_batch

An old field that is not set keeps what config.schedule says (maxload set
alone rescales its steps from epochs of schedule.epoch_steps batches, the
config's old maxload: 500 for the demos, else 4000). Unlike a plain
rename, a set old schedule name always takes effect: the config files set
schedule.* themselves, so the old name comes from a command line, an older
config file or a stored config, and is meant.
"""

import ml_collections

# old dotted name -> new dotted name.
RENAMES = {
    'inference.num_proposals': 'inference.results_per_image',
    'evaluation.num_proposals': 'evaluation.results_per_image',
    'embedmask.detections_per_image': 'embedmask.results_per_image',
    'eval_batches': 'validation_images',
    'solver.bias_lr_factor': 'embedmask.bias_lr_factor',
    'solver.weight_decay_bias': 'embedmask.weight_decay_bias',
}
# Old schedule names, converted into config.schedule (schedule_changes).
EPOCH_NAMES = ('maxload', 'num_epochs', 'learning_rates', 'lr_boundaries_epochs')
SOLVER_NAMES = ('solver.base_lr', 'solver.reference_batch',
                'solver.warmup_factor', 'solver.warmup_iters', 'solver.steps',
                'solver.gamma', 'solver.max_iter')
SOLVER_FAMILIES = ('embedmask',)  # Families that read config.solver.
REFERENCE_EPOCH = 4000  # maxload of the old schema (train.lua's).
SOLVER_AS_IS = {'solver.reference_batch': ('reference_batch', int),
                'solver.warmup_iters': ('warmup_steps', int),
                'solver.warmup_factor': ('warmup_factor', float),
                'solver.max_iter': ('total_steps', int)}
# Families whose old `eval_batches` counted batches of config.batch_size.
BATCH_COUNTED = ('deepmask', 'sharpmask')
_PRINTED = set()


def _parent_and_leaf(config, dotted: str):
  """(sub-dict holding the field, field name); sub-dict None if absent."""
  *parents, leaf = dotted.split('.')
  for name in parents:
    config = config.get(name, None) if config is not None else None
  return config, leaf


def _section(config, dotted: str):
  """(sub-dict for the field, field name), creating missing sub-dicts."""
  *parents, leaf = dotted.split('.')
  for name in parents:
    if name not in config:
      with config.unlocked():
        config[name] = ml_collections.ConfigDict()
    config = config[name]
  return config, leaf


def _pop(config, names) -> dict:
  """{old name: value} of the `names` set in `config`, all of them removed
  (unset placeholders, None, only removed)."""
  values = {}
  for name in names:
    holder, leaf = _parent_and_leaf(config, name)
    if holder is None or leaf not in holder:
      continue
    if holder[leaf] is not None:
      values[name] = holder[leaf]
    with holder.unlocked():
      del holder[leaf]
  return values


def _rate(value: float) -> float:
  """`value` to 12 significant digits: 0.01 x 0.1^2 is 0.0001, not
  0.00010000000000000002 (float32 learning rates cannot tell them apart)."""
  return float(f'{value:.12g}')


def steps_from_epochs(old: dict, schedule) -> dict:
  """{schedule field: value} from DeepMask's old names (epochs of maxload)."""
  unit = int(schedule.get('epoch_steps', REFERENCE_EPOCH))
  epoch = int(old.get('maxload', unit))
  changes = {'epoch_steps': epoch} if 'maxload' in old else {}
  if 'learning_rates' in old:
    changes['learning_rates'] = tuple(float(r) for r in old['learning_rates'])
  if 'num_epochs' in old:
    changes['total_steps'] = int(old['num_epochs']) * epoch
  elif 'maxload' in old:
    changes['total_steps'] = round(schedule.total_steps * epoch / unit)
  if 'lr_boundaries_epochs' in old:
    changes['boundaries'] = tuple(int(e) * epoch
                                  for e in old['lr_boundaries_epochs'])
  elif 'maxload' in old:
    changes['boundaries'] = tuple(round(b * epoch / unit)
                                  for b in schedule.boundaries)
  return changes


def _from_solver(old: dict, schedule) -> dict:
  """{schedule field: value} from EmbedMask's old config.solver names."""
  changes = {field: kind(old[name]) for name, (field, kind)
             in SOLVER_AS_IS.items() if name in old}
  if 'solver.steps' in old:
    changes['boundaries'] = tuple(int(s) for s in old['solver.steps'])
  if old.keys() & {'solver.base_lr', 'solver.gamma', 'solver.steps'}:
    rates = tuple(schedule.learning_rates)
    base = float(old.get('solver.base_lr', rates[0]))
    gamma = float(old.get('solver.gamma', rates[1] / rates[0]
                          if len(rates) > 1 else 0.1))
    intervals = len(changes.get('boundaries', schedule.boundaries)) + 1
    changes['learning_rates'] = tuple(_rate(base * gamma ** k)
                                      for k in range(intervals))
  return changes


def _move_schedule(config, moved: list) -> None:
  """Converts the old schedule names `config` sets into config.schedule
  (created from the schema's if absent: a config stored before it existed);
  appends what was moved, and the other family's names dropped, to `moved`."""
  epochs, solver = _pop(config, EPOCH_NAMES), _pop(config, SOLVER_NAMES)
  model = config.get('model', 'deepmask')
  uses_solver = model in SOLVER_FAMILIES
  used, unused = (solver, epochs) if uses_solver else (epochs, solver)
  if unused:
    moved.append(f'{", ".join(unused)} ignored ({model} does not read them)')
  if not used:
    return
  if 'schedule' not in config:
    from deepmask_jax.config_schema import get_config  # pylint: disable=g-import-not-at-top
    with config.unlocked():
      config.schedule = get_config().schedule
  changes = (_from_solver if uses_solver else steps_from_epochs)(used,
                                                            config.schedule)
  with config.schedule.unlocked():
    config.schedule.update(changes)
  moved.append(f'{", ".join(used)} -> ' + ', '.join(
      f'schedule.{field} {value}' for field, value in changes.items()))


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
  _move_schedule(config, moved)
  for old, new in RENAMES.items():
    holder, leaf = _parent_and_leaf(config, old)
    if holder is None or leaf not in holder:
      continue
    value = holder[leaf]
    with holder.unlocked():
      del holder[leaf]
    if value is None:
      continue
    target, new_leaf = _section(config, new)
    default_holder, _ = _parent_and_leaf(defaults, new)
    if (default_holder is not None and new_leaf in target
        and target[new_leaf] != default_holder.get(new_leaf, None)):
      moved.append(f'{old} ignored ({new} is set)')
      continue
    with target.unlocked():
      target[new_leaf] = _converted(config, old, value)
    moved.append(f'{old} -> {new}')
  if not config.get('solver', True):  # Emptied: every field was old.
    with config.unlocked():
      del config['solver']
  if moved:
    line = ('warning: deprecated config names (they go in the next release): '
            + ', '.join(moved))
    if line not in _PRINTED:
      _PRINTED.add(line)
      print(line, flush=True)
  return config
