"""Do a model's categories mean a dataset's? Checked before scoring or writing.

A class-aware model (EmbedMask) predicts the categories it was trained on, as
its predictor's `categories` lists them ({'id', 'name'} per label, from
config.embedmask.category_ids / category_names). Scored against a dataset, or
written for a COCO json, its ids must mean the same things there:

  SAME       the same ids with the same names: used as they are, silently.
  BY_NAME    the same names under other ids: each prediction takes the
             dataset's id of its name; one line says so.
  DIFFERENT  anything else (other names, a subset, duplicate names): the ids
             cannot be trusted, so no class-aware figure (AP) is computed and
             the predictions are scored class-agnostically (AR); one line
             counts the categories that differ and names a few.

Class-agnostic models (DeepMask, SharpMask) have nothing to compare:
CLASS_AGNOSTIC, no line.

The image CLI has no dataset; given a COCO json (`--categories`) it writes
that json's categories: SAME and BY_NAME as above, DIFFERENT an error before
any image is read (`check_output_categories`).
"""

import dataclasses
import os
from typing import Sequence

import numpy as np

from deepmask_jax.data import coco_json
from deepmask_jax.data.coco_report import counted
from deepmask_jax.errors import InputError

SAME = 'same'
BY_NAME = 'by_name'
DIFFERENT = 'different'
CLASS_AGNOSTIC = 'class_agnostic'
EXAMPLES = 3  # Category names a line gives per side.


@dataclasses.dataclass(frozen=True)
class CategoryCheck:
  """The outcome of comparing a model's categories with a dataset's.

  outcome: SAME, BY_NAME, DIFFERENT or CLASS_AGNOSTIC.
  id_map: {model id: dataset id} (BY_NAME; empty otherwise).
  line: what to tell the user in one line ('' for SAME and CLASS_AGNOSTIC).
  categories: the categories the predictions carry after `relabel`
    ({'id', 'name'} in the model's label order).
  """
  outcome: str
  id_map: dict
  line: str
  categories: tuple

  @property
  def class_aware(self) -> bool:
    """Whether the relabelled predictions carry the dataset's categories."""
    return self.outcome in (SAME, BY_NAME)

  def relabel(self, proposals):
    """One image's EncodedProposals with the dataset's category ids (BY_NAME),
    or none at all (DIFFERENT: scored as class-agnostic proposals)."""
    if self.outcome == BY_NAME:
      ids = [self.id_map[int(i)] for i in proposals.category_ids]
      return dataclasses.replace(proposals,
                                 category_ids=np.asarray(ids, np.int64))
    if self.outcome == DIFFERENT:
      return dataclasses.replace(proposals, category_ids=None)
    return proposals

  def as_dict(self) -> dict:
    """JSON-ready {'outcome', 'note'} (+ 'id_map' for BY_NAME)."""
    record = {'outcome': self.outcome, 'note': self.line}
    if self.id_map:
      record['id_map'] = {str(k): v for k, v in self.id_map.items()}
    return record


def _examples(names: Sequence[str]) -> str:
  shown = ', '.join(repr(n) for n in names[:EXAMPLES])
  return shown + (', ...' if len(names) > EXAMPLES else '')


def _unique(names: Sequence[str]) -> bool:
  return len(set(names)) == len(names)


def _by_name(model: Sequence[dict], dataset: Sequence[dict],
             source: str) -> CategoryCheck:
  id_of = {c['name']: int(c['id']) for c in dataset}
  id_map = {int(c['id']): id_of[c['name']] for c in model}
  moved = [f"{c['name']!r} {c['id']} -> {id_of[c['name']]}" for c in model
           if id_of[c['name']] != int(c['id'])]
  more = ', ...' if len(moved) > EXAMPLES else ''
  line = (f"categories matched by name: {source} has the model's "
          f"{len(model)} names under other ids; predictions take its ids "
          f'({counted(len(moved), "category")} renumbered: '
          f'{", ".join(moved[:EXAMPLES])}{more})')
  categories = tuple({'id': id_map[int(c['id'])], 'name': c['name']}
                     for c in model)
  return CategoryCheck(BY_NAME, id_map, line, categories)


def _different(model: Sequence[dict], dataset: Sequence[dict],
               source: str, consequence: str) -> CategoryCheck:
  model_names = [c['name'] for c in model]
  dataset_names = [c['name'] for c in dataset]
  only_model = [n for n in model_names if n not in set(dataset_names)]
  only_dataset = [n for n in dataset_names if n not in set(model_names)]
  parts = []
  if only_model:
    parts.append(f'{counted(len(only_model), "category")} of the model not '
                 f'in it ({_examples(only_model)})')
  if only_dataset:
    parts.append(f'{counted(len(only_dataset), "category")} of {source} not '
                 f'in the model ({_examples(only_dataset)})')
  if not parts:  # The same names, but some repeated: no one-to-one match.
    parts.append('the same names, but repeated, so they cannot be matched')
  line = (f'categories differ between the model ({len(model)}) and {source} '
          f"({len(dataset)}): {'; '.join(parts)}; {consequence}")
  return CategoryCheck(DIFFERENT, {}, line, tuple(model))


def check_categories(model: Sequence[dict], dataset: Sequence[dict],
                     class_aware: bool, source: str = 'the dataset',
                     consequence: str = 'class-aware AP not computed, '
                     'class-agnostic AR only') -> CategoryCheck:
  """Compares a model's categories with a dataset's (module doc).

  Args:
    model: the predictor's categories ({'id', 'name'} per label).
    dataset: the dataset's categories ({'id', 'name'}).
    class_aware: whether the model predicts categories at all.
    source: how the line names the dataset (e.g. its json file name).
    consequence: what DIFFERENT means for the caller, ending its line.
  """
  model = tuple({'id': int(c['id']), 'name': str(c['name'])} for c in model)
  if not class_aware:
    return CategoryCheck(CLASS_AGNOSTIC, {}, '', model)
  dataset = [{'id': int(c['id']), 'name': str(c['name'])} for c in dataset]
  pairs = {(c['id'], c['name']) for c in model}
  if pairs == {(c['id'], c['name']) for c in dataset}:
    return CategoryCheck(SAME, {}, '', model)
  model_names = [c['name'] for c in model]
  dataset_names = [c['name'] for c in dataset]
  if (_unique(model_names) and _unique(dataset_names)
      and set(model_names) == set(dataset_names)):
    return _by_name(model, dataset, source)
  return _different(model, dataset, source, consequence)


def check_output_categories(predictor, json_path: str = '') -> CategoryCheck:
  """The categories the image CLI writes: the predictor's own, or (with
  `json_path`, a COCO json) that json's, matched by name.

  Raises:
    InputError: the model's categories differ from the json's (one line).
  """
  own = predictor.categories
  if not json_path:
    return check_categories(own, own, predictor.class_aware)
  if not predictor.class_aware:
    only = own[0]
    return CategoryCheck(
        CLASS_AGNOSTIC, {}, f'{json_path}: not used, the model is class-'
        f"agnostic (its proposals keep category {only['id']}, "
        f"{only['name']!r})", tuple(own))
  check = check_categories(own, coco_json.load_categories(json_path), True,
                           os.path.basename(json_path),
                           'the results cannot use its categories')
  if check.outcome == DIFFERENT:
    raise InputError(f'{json_path}: {check.line}')
  return check
