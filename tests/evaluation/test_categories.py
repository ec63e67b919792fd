"""A model's categories against a dataset's: same, matched by name, different."""

import json

import numpy as np
import pytest

from deepmask_jax.errors import InputError
from deepmask_jax.evaluation.categories import (BY_NAME, CLASS_AGNOSTIC,
                                                DIFFERENT, SAME,
                                                check_categories,
                                                check_output_categories)
from deepmask_jax.inference.images import EncodedProposals

SHAPES = [{'id': i + 1, 'name': n} for i, n in enumerate(
    ('ellipse', 'rectangle', 'triangle', 'star', 'ring', 'blob'))]
COCO_LIKE = [{'id': i, 'name': n, 'supercategory': 'x'} for i, n in
             ((1, 'person'), (2, 'bicycle'), (3, 'car'), (5, 'airplane'))]


def proposals(category_ids):
  count = len(category_ids)
  return EncodedProposals([{}] * count, np.zeros((count, 4)),
                          np.ones(count), 8, 8, np.asarray(category_ids))


def test_same_ids_and_names_change_nothing_and_say_nothing():
  check = check_categories(SHAPES, list(reversed(SHAPES)), True)
  assert check.outcome == SAME and check.class_aware and not check.line
  found = proposals([2, 6])
  assert check.relabel(found) is found


def test_same_names_under_other_ids_are_mapped_by_name():
  dataset = [{'id': 10 * c['id'], 'name': c['name']} for c in SHAPES]
  check = check_categories(SHAPES, dataset, True, 'val.json')
  assert check.outcome == BY_NAME and check.class_aware
  assert check.relabel(proposals([2, 6])).category_ids.tolist() == [20, 60]
  assert check.categories[1] == {'id': 20, 'name': 'rectangle'}
  assert '\n' not in check.line and 'val.json' in check.line
  assert "'rectangle' 2 -> 20" in check.line


def test_other_categories_are_counted_and_scored_without_them():
  check = check_categories(SHAPES, COCO_LIKE, True, 'instances_val2017.json')
  assert check.outcome == DIFFERENT and not check.class_aware
  assert check.relabel(proposals([1])).category_ids is None
  assert '\n' not in check.line
  assert "between the model (6) and instances_val2017.json (4)" in check.line
  assert "'ellipse', 'rectangle', 'triangle', ..." in check.line
  assert "'person'" in check.line and 'AP not computed' in check.line


def test_a_subset_of_the_categories_differs():
  check = check_categories(SHAPES, SHAPES[:5], True)
  assert check.outcome == DIFFERENT and "'blob'" in check.line


def test_repeated_names_cannot_be_matched():
  dataset = [{'id': 10 + i, 'name': 'same'} for i in range(2)]
  model = [{'id': 1, 'name': 'same'}, {'id': 2, 'name': 'same'}]
  check = check_categories(model, dataset, True)
  assert check.outcome == DIFFERENT and 'repeated' in check.line


def test_class_agnostic_models_have_nothing_to_compare():
  check = check_categories([{'id': 1, 'name': 'object'}], COCO_LIKE, False)
  assert check.outcome == CLASS_AGNOSTIC and not check.line
  found = proposals([])
  assert check.relabel(found) is found


class Predictor:
  def __init__(self, categories, class_aware=True):
    self.categories, self.class_aware = tuple(categories), class_aware


def write_categories(path, categories):
  with open(path, 'w') as f:
    json.dump({'images': [], 'annotations': [], 'categories': categories}, f)
  return str(path)


def test_output_categories_come_from_a_json_by_name(tmp_path):
  renumbered = [{'id': c['id'] + 100, 'name': c['name']} for c in SHAPES]
  path = write_categories(tmp_path / 'c.json', renumbered)
  check = check_output_categories(Predictor(SHAPES), path)
  assert check.outcome == BY_NAME
  assert [c['id'] for c in check.categories] == [101, 102, 103, 104, 105, 106]
  assert check_output_categories(Predictor(SHAPES)).outcome == SAME


def test_output_categories_that_differ_fail_in_one_line(tmp_path):
  path = write_categories(tmp_path / 'coco.json', COCO_LIKE)
  with pytest.raises(InputError, match='cannot use its categories') as error:
    check_output_categories(Predictor(SHAPES), path)
  assert str(tmp_path / 'coco.json') in str(error.value)
  assert '\n' not in str(error.value)


def test_class_agnostic_output_ignores_the_json_and_says_so(tmp_path):
  path = write_categories(tmp_path / 'coco.json', COCO_LIKE)
  check = check_output_categories(
      Predictor([{'id': 1, 'name': 'object'}], class_aware=False), path)
  assert check.outcome == CLASS_AGNOSTIC
  assert 'not used' in check.line and "'object'" in check.line
  assert check.categories == ({'id': 1, 'name': 'object'},)


def test_output_categories_json_without_categories_is_an_input_error(
    tmp_path):
  path = tmp_path / 'bad.json'
  path.write_text('{"images": []}')
  with pytest.raises(InputError, match="bad.json: no 'categories' list"):
    check_output_categories(Predictor(SHAPES), str(path))
