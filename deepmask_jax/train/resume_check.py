"""A workdir remembers its config: what may change when a run is resumed.

Every checkpoint stores the resolved config it was trained with
(family.resolve_config: e.g. SharpMask's architecture copied from its
DeepMask, EmbedMask's categories read from the dataset). On resume the
trainer compares it, field by field, with the new resolved config, before any
model is built or array restored (`check_resume`).

May change on resume (ALLOWED): fields that steer reporting, cadence, the
length of the run or evaluation, never the TrainState or what a step computes:

  log_every_steps, eval_every_steps, validation_images,  logging and validation
    tensorboard_images
  checkpoint_every_steps, keep_checkpoints          checkpoint cadence
  schedule.total_steps                              the run's length, longer
                                                    or shorter (the lr steps
                                                    sit at fixed steps:
                                                    schedule.boundaries)
  mode, evaluation.*, inference.*                   evaluation and proposals
  embedmask.{score_threshold, pre_nms_top_n, nms_threshold,
    results_per_image, mask_threshold, mask_box_padding}
                                                    EmbedMask's validation
                                                    post-processing
  parallel                                          shard_map and pmap take
                                                    the same step
  data.{num_parallel_calls, prefetch}               input throughput only (the
                                                    pipelines are deterministic)
  resume_changes                                    this policy itself (not
                                                    even reported)

Everything else is refused, a field added to the schema later included until
it is listed here: the family (`model`), batch size, every shape (trunk.*,
head.*, refine.*, embedmask.*), the optimiser and its schedule (optimizer,
momentum, weight_decay, schedule.* but total_steps, embedmask.bias_lr_factor
and weight_decay_bias), the dataset and its sampling (data.*, patch.*,
detection.*),
`dtype` (bf16 changes what every step computes), `seed` (batch t is a
function of (seed, t): another seed is another data stream), and where the
weights came from (trunk_init, init_from, deepmask_checkpoint: a resume
reads the checkpoint, so a new source would be silently ignored). Fields the
checkpoint's config lacks (written before the schema had them) are not
compared.

A refused change stops the run with one InputError line naming each field and
its two values (checkpoint -> now), unless `--config.resume_changes=allow`:
then every change is printed, one line each, and training goes on. If a
change allowed so alters the TrainState's arrays (a shape, the optimiser, the
family), Checkpoints.restore stops with one CheckpointError line naming the
arrays that differ (`check_arrays`) before orbax reads any, and points to
`--config.init_from` in a new workdir.
"""

import json

from deepmask_jax.data.coco_report import counted
from deepmask_jax.errors import CheckpointError, InputError
from deepmask_jax.models.store import config_from_json

POLICIES = ('refuse', 'allow')

ALLOWED = (
    'log_every_steps', 'eval_every_steps', 'validation_images', 'tensorboard_images',
    'checkpoint_every_steps', 'keep_checkpoints',
    'schedule.total_steps',
    'mode', 'evaluation', 'inference',
    'embedmask.score_threshold', 'embedmask.pre_nms_top_n',
    'embedmask.nms_threshold', 'embedmask.results_per_image',
    'embedmask.mask_threshold', 'embedmask.mask_box_padding',
    'parallel', 'data.num_parallel_calls', 'data.prefetch',
)
# The policy of this very resume; the unit of old epoch names (it changes
# no step: config_renames.py).
NOT_COMPARED = ('resume_changes', 'schedule.epoch_steps')

_MAX_SHOWN = 60  # Characters of a value shown (category lists are long).
_MAX_ARRAYS = 3  # Differing arrays named in a restore error.


def allows_changes(config) -> bool:
  """True for `resume_changes='allow'`; InputError for an unknown value."""
  policy = config.get('resume_changes', 'refuse')
  if policy not in POLICIES:
    raise InputError(f"--config.resume_changes must be 'refuse' or 'allow', "
                     f'got {policy!r}')
  return policy == 'allow'


def is_allowed(field: str) -> bool:
  """Whether dotted `field` may change on resume (ALLOWED or under one)."""
  return any(field == name or field.startswith(name + '.')
             for name in ALLOWED)


def _flat(tree: dict, prefix: str = '') -> dict:
  """{'a.b': value} of a nested dict."""
  flat = {}
  for key, value in tree.items():
    if isinstance(value, dict):
      flat.update(_flat(value, f'{prefix}{key}.'))
    else:
      flat[f'{prefix}{key}'] = value
  return flat


def config_changes(saved, config) -> list:
  """[(field, checkpoint value, new value)] of every field that differs.

  `saved`, `config`: ConfigDicts (or nested dicts). Both go through JSON, as
  the checkpoint's did, so lists and tuples compare equal. Fields the saved
  config lacks (older schema) or the new one lacks (field since removed)
  are skipped; the list is sorted by field.
  """
  old, new = _normalised(saved), _normalised(config)
  return [(field, old[field], new[field])
          for field in sorted(old.keys() & new.keys())
          if old[field] != new[field] and field not in NOT_COMPARED]


def _normalised(config) -> dict:
  """{'a.b': value} of a ConfigDict or dict after a JSON round trip."""
  tree = config.to_dict() if hasattr(config, 'to_dict') else config
  return _flat(config_from_json(json.dumps(tree)).to_dict())


def _shown(value) -> str:
  text = repr(value)
  return text if len(text) <= _MAX_SHOWN else text[:_MAX_SHOWN - 3] + '...'


def describe(change) -> str:
  """'field old -> new' of one change."""
  field, old, new = change
  return f'{field} {_shown(old)} -> {_shown(new)}'


def check_resume(saved, config, workdir: str, step: int) -> list:
  """Compares the config of checkpoint `step` with the new one.

  Returns the lines to print (one per changed field); raises InputError
  naming every refused change if any, unless config.resume_changes='allow'.
  """
  allow = allows_changes(config)
  changes = config_changes(saved, config)
  refused = [c for c in changes if not is_allowed(c[0])]
  if refused and not allow:
    raise InputError(
        f'{workdir} was trained with another config; changed since its '
        f'checkpoint step {step} (checkpoint -> now): '
        f'{"; ".join(describe(c) for c in refused)}. These cannot '
        'change on resume: keep the checkpoint\'s values, train in a new '
        f'--workdir (--config.init_from={workdir} starts it from these '
        'weights), or pass --config.resume_changes=allow to resume anyway')
  return [f'resume from step {step}: {describe(c)} ('
          + ('may change on resume' if is_allowed(c[0])
             else 'changed with --config.resume_changes=allow') + ')'
          for c in changes]


def array_differences(saved: dict, wanted: dict) -> list:
  """['path: saved shape -> wanted shape'] where two {path: shape} differ,
  the model's parameters first (they say what changed most plainly)."""
  differences = []
  for path in sorted(saved.keys() | wanted.keys(),
                     key=lambda p: (not p.startswith('params/'), p)):
    old, new = saved.get(path), wanted.get(path)
    if old != new:
      differences.append(
          f'{path}: ' + ('only in the checkpoint' if new is None else
                         'not in the checkpoint' if old is None else
                         f'{old} -> {new}'))
  return differences


def check_arrays(saved: dict, wanted: dict, workdir: str,
                 step: int) -> None:
  """CheckpointError (one line) unless the checkpoint's arrays have the
  shapes of the state to restore; both {'a/b/c': shape tuple}."""
  differences = array_differences(saved, wanted)
  if not differences:
    return
  named = '; '.join(differences[:_MAX_ARRAYS])
  more = len(differences) - _MAX_ARRAYS
  if more > 0:
    named += f'; {more} more'
  raise CheckpointError(
      f'checkpoint step {step} in {workdir} cannot be restored into this '
      f'config\'s training state ({len(differences)} of '
      f'{counted(len(saved | wanted), "array")} differ, checkpoint -> now: '
      f'{named}). A resume continues the same model and optimiser; to start '
      'another from these weights, train in a new --workdir with '
      f'--config.init_from={workdir}')
