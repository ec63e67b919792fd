"""The proposal CLI on a folder of awkward images."""

import contextlib
import io
import json
import os

from absl import flags
from absl.testing import flagsaver
import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from deepmask_jax import propose
from deepmask_jax.errors import InputError
from deepmask_jax.families import get_family
from deepmask_jax.families.deepmask.generator import ProposalGenerator
from deepmask_jax.models.store import save_model
from tests.evaluation.conftest import write_tiny_split
from tests.families.embedmask.test_family import tiny_embedmask_config


def run_cli(*args) -> str:
  """propose.main with these flags; returns what it printed."""
  stdout = io.StringIO()
  argv = ['propose', *args]
  with flagsaver.flagsaver(), contextlib.redirect_stdout(stdout):
    flags.FLAGS.unparse_flags()
    flags.FLAGS(argv)
    propose.main([argv[0]])
  return stdout.getvalue()


def write_images(folder):
  rng = np.random.default_rng(0)
  os.makedirs(folder)
  Image.fromarray(rng.integers(0, 256, (50, 40), dtype=np.uint8)).save(
      os.path.join(folder, 'gray.jpg'))
  Image.fromarray(rng.integers(0, 256, (30, 45, 4), dtype=np.uint8)).save(
      os.path.join(folder, 'alpha.png'))
  Image.fromarray(rng.integers(0, 256, (4, 3, 3), dtype=np.uint8)).save(
      os.path.join(folder, 'tiny.png'))
  Image.fromarray(rng.integers(0, 256, (12, 400, 3), dtype=np.uint8)).save(
      os.path.join(folder, 'long.jpg'))
  with open(os.path.join(folder, 'broken.jpg'), 'wb') as f:
    f.write(b'this is not a JPEG')
  with open(os.path.join(folder, 'notes.txt'), 'w') as f:
    f.write('not an image, not listed')


def test_cli_writes_json_and_overlays_and_skips_unreadable(tmp_path,
                                                           tiny_sharpmask):
  model_dir = str(tmp_path / 'model')
  save_model(model_dir, tiny_sharpmask[1], tiny_sharpmask[2])
  images, out = str(tmp_path / 'images'), str(tmp_path / 'out')
  write_images(images)
  stdout = run_cli(f'--model={model_dir}', f'--images={images}',
                   f'--out={out}', '--num_proposals=12', '--overlays=3')
  assert 'broken.jpg' in stdout
  assert '4 images' in stdout

  index = COCO(os.path.join(out, 'images.json'))
  names = sorted(os.path.basename(i['file_name'])
                 for i in index.dataset['images'])
  assert names == ['alpha.png', 'gray.jpg', 'long.jpg', 'tiny.png']
  results = index.loadRes(os.path.join(out, 'proposals.json'))
  for image in index.dataset['images']:
    anns = results.loadAnns(results.getAnnIds(imgIds=image['id']))
    assert 0 < len(anns) <= 12
    assert all(a['segmentation']['size'] == [image['height'], image['width']]
               for a in anns)
  with open(os.path.join(out, 'proposals_bbox.json')) as f:
    assert len(json.load(f)) == len(results.getAnnIds())
  overlays = sorted(os.listdir(os.path.join(out, 'overlays')))
  assert len(overlays) == 4
  tiny = [o for o in overlays if o.endswith('_tiny.png')][0]
  assert Image.open(os.path.join(out, 'overlays', tiny)).size == (3, 4)


def test_find_images_accepts_a_file_a_folder_and_a_glob(tmp_path):
  folder = str(tmp_path / 'images')
  write_images(folder)
  assert len(propose.find_images(folder)) == 5  # .txt is not an image.
  assert propose.find_images(os.path.join(folder, 'gray.jpg')) == [
      os.path.join(folder, 'gray.jpg')]
  assert [os.path.basename(p) for p in propose.find_images(
      os.path.join(folder, '*.png'))] == ['alpha.png', 'tiny.png']


def test_progress_bar_counts_skipped_files_and_reaches_its_total(
    tmp_path, tiny_deepmask, capsys):
  images = str(tmp_path / 'images')
  write_images(images)  # 5 files, broken.jpg among them.
  generator = ProposalGenerator(*tiny_deepmask, results_per_image=4)
  summary = propose.propose_images(generator, propose.find_images(images),
                                   str(tmp_path / 'out'), overlays=0)
  assert len(summary['skipped']) == 1
  assert '5/5' in capsys.readouterr().err


@pytest.fixture(scope='module')
def embedmask_dir(tmp_path_factory):
  """A tiny EmbedMask model directory of categories (1, 'a'), (2, 'b'),
  (5, 'c'), finding something on any image, and a folder of images."""
  root = tmp_path_factory.mktemp('embedmask_cli')
  config = tiny_embedmask_config(**{'embedmask.score_threshold': 0.0,
                                    'embedmask.results_per_image': 4})
  family = get_family('embedmask')
  variables = family.init_variables(config, family.build_model(config))
  save_model(str(root / 'model'), variables, config)
  write_tiny_split(root / 'data', [(1, 'a'), (2, 'b'), (5, 'c')])
  return root


def write_categories(path, categories):
  with open(path, 'w') as f:
    json.dump({'images': [], 'annotations': [], 'categories': [
        {'id': i, 'name': n} for i, n in categories]}, f)
  return str(path)


def test_categories_json_with_other_ids_maps_the_results_by_name(
    tmp_path, embedmask_dir):
  categories = write_categories(tmp_path / 'c.json',
                                [(3, 'a'), (4, 'b'), (7, 'c')])
  out = tmp_path / 'out'
  stdout = run_cli(f'--model={embedmask_dir / "model"}',
                   f'--images={embedmask_dir / "data" / "images"}',
                   f'--out={out}', f'--categories={categories}',
                   '--overlays=0')
  assert sum('matched by name' in line for line in stdout.splitlines()) == 1
  with open(out / 'images.json') as f:
    assert json.load(f)['categories'] == [
        {'id': 3, 'name': 'a'}, {'id': 4, 'name': 'b'}, {'id': 7, 'name': 'c'}]
  with open(out / 'proposals.json') as f:
    written = {r['category_id'] for r in json.load(f)}
  assert written and written <= {3, 4, 7}


def test_categories_json_that_differs_fails_before_any_image(
    tmp_path, embedmask_dir):
  categories = write_categories(tmp_path / 'coco.json',
                                [(1, 'person'), (2, 'b'), (5, 'c')])
  with pytest.raises(InputError, match="1 category of the model not in it"):
    run_cli(f'--model={embedmask_dir / "model"}',
            f'--images={embedmask_dir / "data" / "images"}',
            f'--out={tmp_path / "out"}', f'--categories={categories}')
  assert not os.path.exists(tmp_path / 'out')


def test_class_agnostic_model_says_the_categories_json_is_not_used(
    tmp_path, tiny_deepmask):
  model_dir = str(tmp_path / 'model')
  save_model(model_dir, tiny_deepmask[1], tiny_deepmask[2])
  images = str(tmp_path / 'images')
  write_images(images)
  categories = write_categories(tmp_path / 'coco.json', [(3, 'person')])
  out = tmp_path / 'out'
  stdout = run_cli(f'--model={model_dir}', f'--images={images}/gray.jpg',
                   f'--out={out}', f'--categories={categories}',
                   '--num_proposals=3', '--overlays=0')
  assert 'not used, the model is class-agnostic' in stdout
  with open(out / 'proposals.json') as f:
    assert {r['category_id'] for r in json.load(f)} == {1}
