"""coco_report: counted nouns read right, and one tally per defect."""

import pytest

from deepmask_jax.data import coco_report
from deepmask_jax.data.coco_report import counted


@pytest.mark.parametrize('noun, many', [
    ('annotation', 'annotations'),
    ('image', 'images'),
    ('category', 'categories'),
    ('category without objects', 'categories without objects'),
    ('image without objects', 'images without objects'),
    ('crowd region', 'crowd regions'),
    ('polygon part', 'polygon parts'),
    ('box', 'boxes'),
    ('patch', 'patches'),
    ('key', 'keys'),
])
def test_counted_puts_the_head_noun_in_the_plural(noun, many):
  assert counted(1, noun) == f'1 {noun}'
  assert counted(14, noun) == f'14 {many}'
  assert counted(0, noun) == f'0 {many}'


def test_the_headline_counts_categories_without_objects():
  report = coco_report.LoadReport()
  for name in ('cat', 'dog'):
    report.add(coco_report.CATEGORY_WITHOUT_OBJECTS, name)
  assert report.headline() == '2 categories without objects noted'
