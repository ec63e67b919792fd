"""Image files of a COCO json, checked against their records.

`read_image` reads an image file the json names, checks it and returns JPEG
bytes ready to store (the TFDS build, per-patch evaluation); `image_error`
words why PIL could not read a file (every path that reads user images).
No TensorFlow here.
"""

import io
import os
import re

from PIL import Image, UnidentifiedImageError

from deepmask_jax.data.coco_json import ImageRecord
from deepmask_jax.data.coco_report import (CONVERTED, MISSING_FILE,
                                           SIZE_MISMATCH, UNREADABLE_FILE,
                                           LoadReport)

_JPEG_QUALITY = 95
_OBJECT_REPR = re.compile(r'<[^<>]* at 0x[0-9a-fA-F]+>')  # '<... object at 0x7f..>'


def image_error(error: BaseException, num_bytes: int | None = None,
                path: str | None = None) -> str:
  """Why PIL could not read an image file, in words for a message.

  The file's size comes from `num_bytes`, else from `path`. PIL's own text
  may hold the repr of an in-memory file ('<_io.BytesIO object at 0x...>'),
  which never reaches a message.
  """
  if num_bytes is None and path is not None:
    try:
      num_bytes = os.path.getsize(path)
    except OSError:
      pass
  if num_bytes == 0:
    return 'empty file (0 bytes)'
  if isinstance(error, UnidentifiedImageError):
    return 'not an image file PIL can read'
  text = _OBJECT_REPR.sub('', str(error)).strip(' :')
  return text or type(error).__name__


def _is_baseline_jpeg(image):
  return (image.format == 'JPEG' and image.mode in ('RGB', 'L')
          and not image.info.get('progressive') and not image.info.get('progression'))


def read_image(record: ImageRecord, report: LoadReport) -> bytes | None:
  """Checks an image file against its record; returns JPEG bytes to store.

  The file is fully decoded with PIL (which catches truncated files). Baseline
  RGB or grayscale JPEGs are returned unchanged; anything else (PNG, CMYK,
  progressive, palette, ...) is converted to RGB and re-encoded as JPEG
  (quality 95) and counted as converted. Missing, unreadable or wrongly sized
  files return None and are counted with the file name and reason.
  """
  try:
    with open(record.path, 'rb') as f:
      encoded = f.read()
  except FileNotFoundError:
    report.add(MISSING_FILE, record.file_name)
    return None
  try:
    image = Image.open(io.BytesIO(encoded))
    image.load()
  except (OSError, EOFError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
    report.add(UNREADABLE_FILE, f'{record.file_name} ({image_error(e, len(encoded))})')
    return None
  if image.size != (record.width, record.height):
    report.add(SIZE_MISMATCH, f'{record.file_name} (file {image.size[0]}x{image.size[1]}, '
               f'json {record.width}x{record.height})')
    return None
  if _is_baseline_jpeg(image):
    return encoded
  report.add(CONVERTED, f'{record.file_name} ({image.format} {image.mode})')
  buffer = io.BytesIO()
  image.convert('RGB').save(buffer, format='JPEG', quality=_JPEG_QUALITY)
  return buffer.getvalue()
