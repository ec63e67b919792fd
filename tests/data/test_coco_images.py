"""coco_images: image files checked against their records, and worded errors."""

import io

import numpy as np
from PIL import Image
import pytest

from deepmask_jax.data import coco_images
from deepmask_jax.data import coco_json
from tests.data import fixtures


def _read(broken_coco, file_name, width=fixtures.WIDTH):
  report = coco_json.LoadReport()
  record = coco_json.ImageRecord(1, file_name, str(broken_coco.train_images / file_name),
                                 fixtures.HEIGHT, width)
  return coco_images.read_image(record, report), report


@pytest.mark.parametrize('file_name', ['truncated.jpg', 'not_image.jpg'])
def test_unreadable_files_are_skipped(broken_coco, file_name):
  encoded, report = _read(broken_coco, file_name)
  assert encoded is None
  assert report.items[coco_json.UNREADABLE_FILE][0].startswith(file_name)


def test_missing_file_is_skipped(broken_coco):
  encoded, report = _read(broken_coco, broken_coco.missing_file)
  assert encoded is None
  assert report.items[coco_json.MISSING_FILE] == [broken_coco.missing_file]


def test_size_mismatch_is_skipped(broken_coco):
  encoded, report = _read(broken_coco, broken_coco.wrong_size_file)
  assert encoded is None and report.counts[coco_json.SIZE_MISMATCH] == 1


@pytest.mark.parametrize('file_name', ['png_named.jpg', 'cmyk.jpg'])
def test_non_rgb_jpeg_files_are_reencoded(broken_coco, file_name):
  encoded, report = _read(broken_coco, file_name)
  image = Image.open(io.BytesIO(encoded))
  assert (image.format, image.mode, image.size) == ('JPEG', 'RGB',
                                                    (fixtures.WIDTH, fixtures.HEIGHT))
  assert report.items[coco_json.CONVERTED][0].startswith(file_name)
  original = Image.open(broken_coco.train_images / file_name).convert('RGB')
  # JPEG at quality 95 stays close to the original pixels.
  difference = np.abs(np.asarray(image, np.float32) - np.asarray(original, np.float32))
  assert difference.mean() < 12


def test_grayscale_jpeg_is_stored_unchanged(broken_coco):
  encoded, report = _read(broken_coco, 'gray.jpg')
  assert encoded == (broken_coco.train_images / 'gray.jpg').read_bytes()
  assert not report.counts


def test_a_zero_byte_image_is_called_empty(tmp_path):
  (tmp_path / 'empty.jpg').write_bytes(b'')
  record = coco_json.ImageRecord(1, 'empty.jpg', str(tmp_path / 'empty.jpg'), 10, 10)
  report = coco_json.LoadReport()
  assert coco_images.read_image(record, report) is None
  assert report.items[coco_json.UNREADABLE_FILE] == ['empty.jpg (empty file (0 bytes))']
  # Read by path (evaluation, the proposal CLI), it is worded the same.
  with pytest.raises(OSError) as error:
    Image.open(tmp_path / 'empty.jpg')
  assert coco_images.image_error(error.value, path=str(tmp_path / 'empty.jpg')) == (
      'empty file (0 bytes)')


def test_no_image_message_shows_an_object_repr(broken_coco):
  for file_name in broken_coco.unreadable_files:
    _, report = _read(broken_coco, file_name)
    item = report.items[coco_json.UNREADABLE_FILE][0]
    assert item.startswith(f'{file_name} (') and ' at 0x' not in item, item
    assert 'BytesIO' not in item, item
