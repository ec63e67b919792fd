"""Reads and validates a COCO instances json (COCO 2014/2017 or a user's own).

No TensorFlow here: the evaluation and inference code may import this module.
Every path that reads a COCO json goes through `load_instances`: the TFDS
build for training, per-image evaluation (which scores exactly the records
kept here, `coco_dataset`) and per-patch evaluation.

Rules. A json that cannot be used raises `DataError` naming the file and the
record or position: invalid JSON, wrong top-level types, missing or ill-typed
keys (strings or booleans where numbers or ids belong, NaN ids), image or
category records that are wrong (size, duplicate id), no annotations at all,
or none left after cleaning. An annotation whose values are wrong but
well-typed is dropped, named and counted in the `LoadReport`
(coco_report.py): unknown image or category, NaN or infinite numbers in its
box, area or polygons, zero-area, negative or out-of-image boxes, odd-length
or too-short polygon parts, RLE sizes that differ from the image's (swapped
included) or counts that do not cover it, empty masks, duplicate ids.
Image files against their records: coco_images.py. Masks from
segmentations: coco_masks.py.
"""

import collections
import dataclasses
import json
import math
import os
from typing import Any


from deepmask_jax.data.coco_masks import segmentation_area
from deepmask_jax.data.coco_report import (  # Re-exported: one place for reasons.
    BAD_AREA, BAD_BOX, BAD_RLE_COUNTS, BAD_RLE_SIZE, BOX_OUTSIDE_IMAGE,
    CATEGORY_WITHOUT_OBJECTS, CONVERTED, DUPLICATE_ANNOTATION, EMPTY_MASK,
    IMAGE_WITHOUT_OBJECTS, MISSING_FILE, NO_VALID_POLYGON, NOT_FINITE,
    POLYGON_ODD_COORDINATES, POLYGON_TOO_FEW_POINTS, SIZE_MISMATCH,
    UNKNOWN_CATEGORY, UNKNOWN_IMAGE, UNREADABLE_FILE, LoadReport, counted)
from deepmask_jax.errors import DataError



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


# ----------------------------------------------------------------------------
# Json structure checks: a malformed json fails at once, naming the record.


def _fail(where: str, message: str):
  raise DataError(f'{where}: {message}')


def _record_name(file_label, section, index, record):
  rid = record.get('id') if isinstance(record, dict) else None
  suffix = f' (id {rid!r})' if rid is not None else ''
  return f'{file_label}: {section}[{index}]{suffix}'


def _is_number(value):
  return isinstance(value, (int, float)) and not isinstance(value, bool)


def _is_int(value):
  return isinstance(value, int) and not isinstance(value, bool)


def _require(record, key, kind, where):
  """Returns record[key], raising DataError if it is missing or ill-typed."""
  if not isinstance(record, dict):
    _fail(where, f'expected an object, got {type(record).__name__}')
  if key not in record:
    _fail(where, f"'{key}' missing")
  value = record[key]
  if kind == 'int':
    ok = _is_int(value)
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
    _fail(where, f"'{key}' has the wrong type ({kind} expected): {_shown(value)}")
  return value


def _shown(value, limit=60):
  """repr(value), cut to `limit` characters: a string shows its quotes."""
  text = repr(value)
  return text if len(text) <= limit else text[:limit - 3] + '...'


def _is_polygon_list(value):
  return isinstance(value, list) and all(
      isinstance(part, list) and all(map(_is_number, part)) for part in value)


def _is_rle(value):
  if not isinstance(value, dict):
    return False
  counts, size = value.get('counts'), value.get('size')
  counts_ok = (isinstance(counts, str) and counts.isascii()) or (
      isinstance(counts, list) and all(_is_int(c) and c >= 0 for c in counts))
  size_ok = (isinstance(size, list) and len(size) == 2
             and all(_is_int(s) and s > 0 for s in size))
  return counts_ok and size_ok


def _load_json(json_path):
  """The parsed json; a file that cannot be read as JSON is a DataError."""
  label = os.path.basename(json_path)
  try:
    with open(json_path, 'rb') as f:
      data = json.load(f)
  except FileNotFoundError as e:
    raise DataError(f'{json_path}: file not found') from e
  except json.JSONDecodeError as e:
    raise DataError(f'{label}: invalid JSON at line {e.lineno} column {e.colno} '
                    f'(character {e.pos}): {e.msg}') from e
  except UnicodeDecodeError as e:
    raise DataError(f'{label}: not UTF-8 text (byte {e.start})') from e
  return data


def _read_json(json_path):
  label = os.path.basename(json_path)
  data = _load_json(json_path)
  if not isinstance(data, dict):
    _fail(label, 'top level must be an object with images/annotations/categories, '
          f'got {type(data).__name__}')
  for section in ('images', 'annotations', 'categories'):
    if section not in data:
      _fail(label, f"'{section}' missing")
    if not isinstance(data[section], list):
      _fail(label, f"'{section}' must be a list, got {type(data[section]).__name__}")
  if not data['annotations']:
    _fail(label, "no annotations ('annotations' is empty)")
  return data


def _parse_categories(data, label):
  categories, name_of = [], {}
  for index, record in enumerate(data['categories']):
    where = _record_name(label, 'categories', index, record)
    cid = _require(record, 'id', 'int', where)
    name = _require(record, 'name', 'str', where)
    if cid in name_of:
      _fail(where, f'duplicate category id: {name!r} has the id of {name_of[cid]!r}')
    name_of[cid] = name
    categories.append({'id': cid, 'name': name})
  return sorted(categories, key=lambda c: c['id'])


def load_categories(json_path) -> list[dict]:
  """The categories of a COCO json ({'id', 'name'}, sorted by id), checked
  as `load_instances` checks them; images and annotations are not read."""
  label = os.path.basename(json_path)
  data = _load_json(json_path)
  if not isinstance(data, dict) or not isinstance(data.get('categories'), list):
    _fail(label, "no 'categories' list at the top level")
  return _parse_categories(data, label)


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
      _fail(where, f'duplicate image id: {file_name!r} has the id of '
            f'{images[image_id].file_name!r}')
    images[image_id] = ImageRecord(image_id, file_name, os.path.join(image_dir, file_name),
                                   height, width)
  return images


# ----------------------------------------------------------------------------
# Annotation cleaning: bad records are dropped and reported.


def _all_finite(values):
  return all(math.isfinite(v) for v in values)


def _clean_polygons(polygons, report, item):
  """Drops polygon parts with an odd coordinate count or fewer than 3 points.

  Such parts also trip pycocotools: a 4-number part is read as a box. Returns
  (kept parts, details of the dropped ones); the dropped parts are counted
  here only if some part is kept, else the annotation's drop names them.
  """
  kept, dropped = [], []
  for part in polygons:
    if len(part) % 2:
      dropped.append((POLYGON_ODD_COORDINATES, counted(len(part), 'coordinate')))
    elif len(part) < 6:
      dropped.append((POLYGON_TOO_FEW_POINTS, counted(len(part) // 2, 'point')))
    else:
      kept.append([float(v) for v in part])
  if kept:
    for reason, detail in dropped:
      report.add(reason, f'{item} ({detail})')
  return kept, ', '.join(detail for _, detail in dropped)


def _box_defect(bbox, image):
  """(reason, detail) of a box that cannot be used, or None."""
  x, y, w, h = bbox
  if not _all_finite(bbox):
    return NOT_FINITE, f'bbox {bbox}'
  if w <= 0 or h <= 0:
    return BAD_BOX, f'w={w}, h={h}'
  if x >= image.width or y >= image.height or x + w <= 0 or y + h <= 0:
    return BOX_OUTSIDE_IMAGE, f'bbox {bbox}, image {image.width}x{image.height}'
  return None


def _rle_defect(rle, image):
  """(reason, detail) of an RLE that does not fit its image, or None."""
  expected = [image.height, image.width]
  size = list(rle['size'])
  if size != expected:
    swapped = ': height and width swapped' if size == expected[::-1] else ''
    return BAD_RLE_SIZE, f'size {size}, image [height, width] {expected}{swapped}'
  if isinstance(rle['counts'], list) and sum(rle['counts']) != image.height * image.width:
    return BAD_RLE_COUNTS, (f"counts sum to {sum(rle['counts'])}, image has "
                            f'{image.height * image.width} pixels')
  return None


def _segmentation_defect(segmentation, image, report, item):
  """(cleaned segmentation, None) or (None, (reason, detail)) if unusable."""
  if isinstance(segmentation, list):
    if not all(_all_finite(part) for part in segmentation):
      return None, (NOT_FINITE, 'segmentation')
    segmentation, dropped = _clean_polygons(segmentation, report, item)
    return (segmentation, None) if segmentation else (None, (NO_VALID_POLYGON, dropped))
  defect = _rle_defect(segmentation, image)
  return (None, defect) if defect else (segmentation, None)


def _parse_annotation(record, where, images, label_of, report):
  """Returns (image_id, ObjectRecord) or None when the annotation is dropped."""
  ann_id = _require(record, 'id', 'int', where)
  image_id = _require(record, 'image_id', 'int', where)
  category_id = _require(record, 'category_id', 'int', where)
  bbox = _require(record, 'bbox', 'bbox', where)
  segmentation = _require(record, 'segmentation', 'segmentation', where)
  area = _require(record, 'area', 'number', where) if 'area' in record else None
  iscrowd = record.get('iscrowd', 0)
  if iscrowd not in (0, 1) or isinstance(iscrowd, float):
    _fail(where, f"'iscrowd' must be 0 or 1, got {iscrowd!r}")
  item = f'annotation {ann_id}'

  def drop(reason, detail=''):
    report.add(reason, f'{item} ({detail})' if detail else item)

  if image_id not in images:
    return drop(UNKNOWN_IMAGE, f'image {image_id}')
  if category_id not in label_of:
    return drop(UNKNOWN_CATEGORY, f'category {category_id}')
  image = images[image_id]
  defect = _box_defect(bbox, image)
  if defect is None and area is not None and not math.isfinite(area):
    defect = NOT_FINITE, f'area {area}'
  if defect is None and area is not None and area < 0:
    defect = BAD_AREA, f'area {area}'
  if defect is None:
    segmentation, defect = _segmentation_defect(segmentation, image, report, item)
  if defect is not None:
    return drop(*defect)
  mask_area = segmentation_area(segmentation, image.height, image.width)
  if mask_area == 0:
    return drop(EMPTY_MASK)
  # COCO's own 'area' is kept when present (COCOeval's area ranges read it).
  return image_id, ObjectRecord(
      id=ann_id, category_id=category_id, label=label_of[category_id],
      bbox=tuple(float(v) for v in bbox),
      area=mask_area if area is None else float(area),
      iscrowd=bool(iscrowd), segmentation=segmentation)


def load_instances(json_path, image_dir):
  """Parses and validates a COCO instances json against an image folder.

  Args:
    json_path: path of the instances json.
    image_dir: folder holding the images named by `file_name`.

  Returns:
    (images, categories, report): ImageRecords in json order (images without
    objects included), the categories sorted by id ({'id', 'name'}), and the
    LoadReport of what was dropped. Image files are not opened here (see
    coco_images.read_image).

  Raises:
    DataError: the json is missing or cannot be used; the message names the
      file and the record or position.
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
  if not seen_ids:
    total = counted(len(data['annotations']), 'annotation')
    raise DataError(f'{label}: none of its {total} is usable ({report.headline()}; first: '
                    f'{_first_item(report)})')
  _report_empty(images.values(), categories, report)
  return list(images.values()), categories, report


def _first_item(report):
  reason = next(iter(report.counts))
  return f'{reason}: {report.items[reason][0]}'


def _report_empty(images, categories, report):
  used = collections.Counter()
  for image in images:
    if not image.objects:
      report.add(IMAGE_WITHOUT_OBJECTS, image.file_name)
    used.update(obj.category_id for obj in image.objects)
  for category in categories:
    if not used[category['id']]:
      report.add(CATEGORY_WITHOUT_OBJECTS, f"{category['name']} (id {category['id']})")
