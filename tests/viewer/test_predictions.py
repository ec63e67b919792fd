"""The viewer's images, network calls, cache and result records (no browser)."""

import io
import json

import numpy as np
import pytest
from PIL import Image
from pycocotools.coco import COCO

from deepmask_jax.evaluation.results_json import proposal_results
from deepmask_jax.inference.images import read_image
from deepmask_jax.viewer import predictions
from deepmask_jax.viewer.predictions import (UnreadableImage, ViewerState,
                                             decode_image, load_models)
from tests.viewer.conftest import fake_model


def encoded(image: Image.Image, fmt: str) -> bytes:
  buffer = io.BytesIO()
  image.save(buffer, format=fmt)
  return buffer.getvalue()


@pytest.mark.parametrize('mode,fmt', [('L', 'PNG'), ('CMYK', 'JPEG'),
                                      ('RGBA', 'PNG'), ('P', 'PNG')])
def test_decode_image_reads_like_propose(tmp_path, mode, fmt):
  rng = np.random.default_rng(0)
  channels = {'L': 1, 'P': 1, 'CMYK': 4, 'RGBA': 4}[mode]
  pixels = rng.integers(0, 256, (9, 13, channels), np.uint8).squeeze()
  data = encoded(Image.fromarray(pixels, mode), fmt)
  (tmp_path / 'image').write_bytes(data)
  decoded = decode_image(data, 'image')
  assert decoded.shape == (9, 13, 3) and decoded.dtype == np.uint8
  np.testing.assert_array_equal(decoded, read_image(str(tmp_path / 'image')))


def test_decode_image_names_a_file_that_is_not_an_image():
  with pytest.raises(UnreadableImage, match=r'notes\.txt: cannot read it as '
                     r'an image \(not an image file'):
    decode_image(b'just some text', 'notes.txt')
  with pytest.raises(UnreadableImage, match=r'empty file'):
    decode_image(b'', 'empty.jpg')


def test_each_image_and_model_runs_the_network_once():
  first, second = fake_model('a'), fake_model('b')
  state = ViewerState([first, second])
  data = encoded(Image.new('RGB', (20, 10), 'red'), 'PNG')
  key = state.add_upload(data, 'red.png')['image']
  result = state.result(key, 0)
  assert state.add_upload(data, 'again.png')['image'] == key
  assert state.result(key, 0) is result
  state.result(key, 1)
  assert (first.predictor.calls, second.predictor.calls) == (1, 1)
  assert result['compiled'] and result['seconds'] >= 0


def test_old_images_leave_the_cache():
  state = ViewerState([fake_model()])
  keys = [state.add_upload(encoded(Image.new('L', (4, 4), i), 'PNG'),
                           f'{i}.png')['image']
          for i in range(predictions.KEPT_IMAGES + 1)]
  with pytest.raises(KeyError, match='upload it again'):
    state.png(keys[0])
  assert Image.open(io.BytesIO(state.png(keys[-1]))).size == (4, 4)


def test_result_records_are_what_propose_writes_and_load_in_coco(tmp_path):
  model = fake_model(class_aware=True)
  state = ViewerState([model])
  info = state.add_upload(encoded(Image.new('RGB', (30, 20)), 'PNG'), 'x.png')
  result = state.result(info['image'], 0)
  proposals = model.predictor.propose_encoded([np.zeros((20, 30, 3),
                                                        np.uint8)])[0]
  segm, bbox = proposal_results(predictions.IMAGE_ID, proposals, 1)
  assert (result['segm'], result['bbox']) == (segm, bbox)
  assert result['names'] == {'3': 'cat', '7': 'dog'}
  assert len(result['colours']) == len(segm) and result['class_aware']
  images = {'images': [{'id': 1, 'height': 20, 'width': 30,
                        'file_name': 'x.png'}], 'annotations': [],
            'categories': [{'id': 3, 'name': 'cat'}, {'id': 7, 'name': 'dog'}]}
  (tmp_path / 'images.json').write_text(json.dumps(images))
  (tmp_path / 'results.json').write_text(json.dumps(result['segm']))
  loaded = COCO(str(tmp_path / 'images.json')).loadRes(
      str(tmp_path / 'results.json'))
  assert len(loaded.getAnnIds()) == len(segm)


def test_only_listed_files_are_read(tmp_path):
  path = tmp_path / 'listed.png'
  Image.new('RGB', (5, 6)).save(path)
  state = ViewerState([fake_model()], [str(path)])
  assert state.add_listed(0)['name'] == 'listed.png'
  assert state.describe()['images'] == ['listed.png']
  with pytest.raises(KeyError, match='no listed image 1'):
    state.add_listed(1)


def test_load_models_names_a_path_without_a_model(tmp_path):
  with pytest.raises(FileNotFoundError, match='neither a model directory'):
    load_models([str(tmp_path)])
