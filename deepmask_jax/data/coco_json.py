"""Reads and validates a COCO instances json (COCO 2014/2017 or a user's own).

No TensorFlow here: the evaluation and inference code may import this module.

`load_instances` turns the json into `ImageRecord`s, drops or skips bad
records (each counted in a `LoadReport`), and raises `ValueError` naming the
file and the record when the json itself is malformed. `read_image` checks an
image file against its record and returns JPEG bytes ready to store, and
`rasterize` turns a segmentation into a full-image binary mask with pycocotools
(the `COCO.annToMask` logic).
"""

import collections
import dataclasses
import io
import json
import os
from typing import Any

import numpy as np
from PIL import Image
from pycocotools import mask as mask_utils

# Reasons a record is dropped, skipped or changed (keys of LoadReport.counts).
POLYGON_TOO_FEW_POINTS = 'polygon part with fewer than 3 points dropped'
NO_VALID_POLYGON = 'annotation skipped: no polygon part left'
BAD_BOX = 'annotation skipped: zero-area or negative box'
BAD_RLE_SIZE = 'annotation skipped: RLE size differs from the image size'
EMPTY_MASK = 'annotation skipped: mask has no pixels'
UNKNOWN_IMAGE = 'annotation skipped: unknown image id'
UNKNOWN_CATEGORY = 'annotation skipped: unknown category id'
DUPLICATE_ANNOTATION = 'annotation skipped: duplicate annotation id'
IMAGE_WITHOUT_OBJECTS = 'image without objects (kept)'
CATEGORY_WITHOUT_OBJECTS = 'category without objects'
MISSING_FILE = 'image skipped: file missing'
UNREADABLE_FILE = 'image skipped: unreadable (truncated or not an image)'
SIZE_MISMATCH = 'image skipped: file size differs from the json'
CONVERTED = 'image re-encoded to baseline RGB JPEG'

# How many file names / ids the summary lists per reason.
_SUMMARY_EXAMPLES = 5
_JPEG_QUALITY = 95


@dataclasses.dataclass
class ObjectRecord:
  """One annotation. `bbox` is COCO [x, y, w, h] in pixels."""
  id: int
  category_id: int
  label: int  # Contiguous 0..C-1 by sorted category id.
  bbox: tuple[float, float, float, float]
  area: float
  iscrowd: bool
  segmentation: Any  # Polygons (list of lists) or RLE dict, as in the json.


@dataclasses.dataclass
class ImageRecord:
  id: int
  file_name: str
  path: str
  height: int
  width: int
  objects: list[ObjectRecord] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LoadReport:
  """Per-reason counts of dropped, skipped or changed records, with examples.

  `items[reason]` lists the file names or annotation ids concerned (with a
  short detail), so a user can find them in the json.
  """
  source: str = ''
  counts: collections.Counter = dataclasses.field(default_factory=collections.Counter)
  items: dict[str, list[str]] = dataclasses.field(
      default_factory=lambda: collections.defaultdict(list))

  def add(self, reason: str, item: str) -> None:
    self.counts[reason] += 1
    self.items[reason].append(item)

  def summary(self) -> str:
    """A readable multi-line text: one line per reason, a few examples each."""
    header = f'{self.source}: ' if self.source else ''
    if not self.counts:
      return f'{header}all records valid.'
    lines = [f'{header}{sum(self.counts.values())} records dropped, skipped or changed:']
    for reason in sorted(self.counts):
      examples = self.items[reason][:_SUMMARY_EXAMPLES]
      more = self.counts[reason] - len(examples)
      suffix = f', ... ({more} more)' if more > 0 else ''
      lines.append(f'  {self.counts[reason]:6d}  {reason}: {", ".join(examples)}{suffix}')
    return '\n'.join(lines)


# ----------------------------------------------------------------------------
# Json structure checks: a malformed json fails at once, naming the record.


def _fail(where: str, message: str):
  raise ValueError(f'{where}: {message}')


def _record_name(file_label, section, index, record):
  rid = record.get('id') if isinstance(record, dict) else None
  suffix = f' (id {rid})' if rid is not None else ''
  return f'{file_label}: {section}[{index}]{suffix}'


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _require(record, key, kind, where):
  """Returns record[key], raising ValueError if it is missing or ill-typed."""
  if not isinstance(record, dict):
    _fail(where, f'expected an object, got {type(record).__name__}')
  if key not in record:
    _fail(where, f"'{key}' missing")
  value = record[key]
  if kind == 'int':
    ok = isinstance(value, int) and not isinstance(value, bool)
  elif kind == 'number':
    ok = _is_number(value)
  elif kind == 'str':
    ok = isinstance(value, str)
  elif kind == 'bbox':
    ok = isinstance(value, list) and len(value) == 4 and all(map(_is_number, value))
  elif kind == 'segmentation':
    ok = _is_polygon_list(value) or _is_rle(value)
  else:
    raise AssertionError(kind)
  if not ok:
    _fail(where, f"'{key}' has the wrong type ({kind} expected): {str(value)[:60]}")
  return value


def _is_polygon_list(value):
  return isinstance(value, list) and all(
      isinstance(part, list) and all(map(_is_number, part)) for part in value)


def _is_rle(value):
  return (isinstance(value, dict) and isinstance(value.get('counts'), (str, list))
          and isinstance(value.get('size'), list) and len(value['size']) == 2)


def _read_json(json_path):
  label = os.path.basename(json_path)
  try:
    with open(json_path, 'rb') as f:
      data = json.load(f)
  except json.JSONDecodeError as e:
    raise ValueError(f'{label}: invalid JSON at line {e.lineno} column {e.colno}: '
                     f'{e.msg}') from e
  if not isinstance(data, dict):
    _fail(label, 'top level must be an object with images/annotations/categories')
  for section in ('images', 'annotations', 'categories'):
    if not isinstance(data.get(section), list):
      _fail(label, f"'{section}' missing or not a list")
  return data


def _parse_categories(data, label):
  categories, seen = [], set()
  for index, record in enumerate(data['categories']):
    where = _record_name(label, 'categories', index, record)
    cid = _require(record, 'id', 'int', where)
    name = _require(record, 'name', 'str', where)
    if cid in seen:
      _fail(where, 'duplicate category id')
    seen.add(cid)
    categories.append({'id': cid, 'name': name})
  return sorted(categories, key=lambda c: c['id'])


def _parse_images(data, label, image_dir):
  images = {}
  for index, record in enumerate(data['images']):
    where = _record_name(label, 'images', index, record)
    image_id = _require(record, 'id', 'int', where)
    file_name = _require(record, 'file_name', 'str', where)
    height = _require(record, 'height', 'int', where)
    width = _require(record, 'width', 'int', where)
    if height <= 0 or width <= 0:
      _fail(where, f'height and width must be positive, got {height}x{width}')
    if image_id in images:
      _fail(where, 'duplicate image id')
    images[image_id] = ImageRecord(image_id, file_name, os.path.join(image_dir, file_name),
                                   height, width)
  return images


# ----------------------------------------------------------------------------
# Annotation cleaning: bad records are dropped or skipped and reported.


def _clean_polygons(polygons, report, item):
  """Drops polygon parts with fewer than 3 points (or an odd coordinate count).

  Such parts also trip pycocotools: a 4-number part is read as a box.
  """
  kept = []
  for part in polygons:
    if len(part) >= 6 and len(part) % 2 == 0:
      kept.append([float(v) for v in part])
    else:
      report.add(POLYGON_TOO_FEW_POINTS, f'{item} ({len(part) // 2} points)')
  return kept


def _segmentation_area(segmentation, height, width):
  return float(mask_utils.area(_to_rle(segmentation, height, width)))


def _parse_annotation(record, where, images, label_of, report):
  """Returns (image_id, ObjectRecord) or None when the annotation is skipped."""
  ann_id = _require(record, 'id', 'int', where)
  image_id = _require(record, 'image_id', 'int', where)
  category_id = _require(record, 'category_id', 'int', where)
  bbox = _require(record, 'bbox', 'bbox', where)
  segmentation = _require(record, 'segmentation', 'segmentation', where)
  iscrowd = record.get('iscrowd', 0)
  if iscrowd not in (0, 1, True, False):
    _fail(where, f"'iscrowd' must be 0 or 1, got {iscrowd!r}")
  item = f'annotation {ann_id}'
  if image_id not in images:
    report.add(UNKNOWN_IMAGE, f'{item} (image {image_id})')
    return None
  if category_id not in label_of:
    report.add(UNKNOWN_CATEGORY, f'{item} (category {category_id})')
    return None
  if bbox[2] <= 0 or bbox[3] <= 0:
    report.add(BAD_BOX, f'{item} (w={bbox[2]}, h={bbox[3]})')
    return None
  image = images[image_id]
  if isinstance(segmentation, list):
    segmentation = _clean_polygons(segmentation, report, item)
    if not segmentation:
      report.add(NO_VALID_POLYGON, item)
      return None
  elif list(segmentation['size']) != [image.height, image.width]:
    report.add(BAD_RLE_SIZE, f"{item} ({segmentation['size']} vs "
               f'{[image.height, image.width]})')
    return None
  mask_area = _segmentation_area(segmentation, image.height, image.width)
  if mask_area == 0:
    report.add(EMPTY_MASK, item)
    return None
  # COCO's own 'area' is kept when present (COCOeval's area ranges read it).
  area = float(_require(record, 'area', 'number', where)) if 'area' in record else mask_area
  return image_id, ObjectRecord(id=ann_id, category_id=category_id,
                                label=label_of[category_id],
                                bbox=tuple(float(v) for v in bbox), area=area,
                                iscrowd=bool(iscrowd), segmentation=segmentation)


def load_instances(json_path, image_dir):
  """Parses and validates a COCO instances json against an image folder.

  Args:
    json_path: path of the instances json.
    image_dir: folder holding the images named by `file_name`.

  Returns:
    (images, categories, report): ImageRecords in json order (images without
    objects included), the categories sorted by id ({'id', 'name'}), and the
    LoadReport of what was dropped or skipped. Image files are not opened here
    (see `read_image`).

  Raises:
    FileNotFoundError: the json is missing.
    ValueError: the json is malformed; the message names the file and record.
  """
  label = os.path.basename(json_path)
  data = _read_json(json_path)
  categories = _parse_categories(data, label)
  label_of = {c['id']: index for index, c in enumerate(categories)}
  images = _parse_images(data, label, image_dir)
  report = LoadReport(source=label)
  seen_ids = set()
  for index, record in enumerate(data['annotations']):
    where = _record_name(label, 'annotations', index, record)
    parsed = _parse_annotation(record, where, images, label_of, report)
    if parsed is None:
      continue
    image_id, obj = parsed
    if obj.id in seen_ids:
      report.add(DUPLICATE_ANNOTATION, f'annotation {obj.id}')
      continue
    seen_ids.add(obj.id)
    images[image_id].objects.append(obj)
  _report_empty(images.values(), categories, report)
  return list(images.values()), categories, report


def _report_empty(images, categories, report):
  used = collections.Counter()
  for image in images:
    if not image.objects:
      report.add(IMAGE_WITHOUT_OBJECTS, image.file_name)
    used.update(obj.category_id for obj in image.objects)
  for category in categories:
    if not used[category['id']]:
      report.add(CATEGORY_WITHOUT_OBJECTS, f"{category['name']} (id {category['id']})")


# ----------------------------------------------------------------------------
# Masks and image files.


def _to_rle(segmentation, height, width):
  """Segmentation (polygons, uncompressed or compressed RLE) -> one RLE."""
  if isinstance(segmentation, list):
    return mask_utils.merge(mask_utils.frPyObjects(segmentation, height, width))
  if isinstance(segmentation['counts'], list):
    return mask_utils.frPyObjects(segmentation, height, width)
  counts = segmentation['counts']
  return {'size': list(segmentation['size']),
          'counts': counts.encode('ascii') if isinstance(counts, str) else counts}


def rasterize(segmentation, height, width) -> np.ndarray:
  """Segmentation -> binary mask, uint8 (height, width) with values 0/1.

  Same result as pycocotools `COCO.annToMask` for the annotation.
  """
  return mask_utils.decode(_to_rle(segmentation, height, width))


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
    report.add(UNREADABLE_FILE, f'{record.file_name} ({e})')
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
