"""The ground truth an evaluation scores: a COCO json as data/coco_json.py checks it.

Evaluation reads ground truth only through `load_ground_truth`, which runs
the same checks as the training data (`coco_json.load_instances`) and builds
pycocotools' COCO object from the records they kept (no second json read):
what COCOeval scores is exactly what the checks let through, and a dropped
record is named and counted rather than changing a figure in silence. A json
that cannot be used raises `DataError` here, before any image is evaluated.

Images that cannot be read (missing, unreadable, or of another size than the
json says) are left out of the scoring: removed from the evaluated image ids,
named and counted in the figures (`coverage`), in per-image and per-patch
evaluation alike.
"""

import contextlib
import dataclasses
import io
from typing import Iterable, Optional

from pycocotools.coco import COCO

from deepmask_jax.data import coco_json
from deepmask_jax.data.coco_report import LoadReport, counted


@dataclasses.dataclass
class GroundTruth:
  """A checked COCO split.

  coco: pycocotools COCO built from the kept records.
  images: the kept ImageRecords (json order), objects included.
  report: what the checks dropped (coco_report.LoadReport).
  """
  json_path: str
  image_dir: str
  coco: COCO
  images: list
  report: LoadReport

  def __post_init__(self):
    self._by_id = {image.id: image for image in self.images}

  def image(self, image_id: int) -> coco_json.ImageRecord:
    return self._by_id[image_id]

  def object_counts(self, image_ids: Iterable[int]) -> tuple[int, int]:
    """(objects, crowd regions) on the given images."""
    objects = [obj for i in set(image_ids) for obj in self.image(i).objects]
    crowd = sum(obj.iscrowd for obj in objects)
    return len(objects) - crowd, crowd


def coco_dataset(images, categories) -> dict:
  """The checked records as a COCO dataset dict (pycocotools' `COCO.dataset`).

  Cleaned polygons, RLEs, boxes and areas as `load_instances` kept them.
  """
  return {
      'images': [{'id': image.id, 'file_name': image.file_name,
                  'height': image.height, 'width': image.width}
                 for image in images],
      'annotations': [{'id': obj.id, 'image_id': image.id,
                       'category_id': obj.category_id, 'bbox': list(obj.bbox),
                       'area': obj.area, 'iscrowd': int(obj.iscrowd),
                       'segmentation': obj.segmentation}
                      for image in images for obj in image.objects],
      'categories': [dict(category) for category in categories]}


def coco_from_dataset(dataset: dict) -> COCO:
  """A pycocotools COCO over an in-memory dataset dict (indexed, quietly)."""
  coco = COCO()
  coco.dataset = dataset
  with contextlib.redirect_stdout(io.StringIO()):
    coco.createIndex()
  return coco


def load_ground_truth(json_path: str, image_dir: str,
                      verbose: bool = True) -> GroundTruth:
  """Checks a COCO split and indexes what it keeps; prints what was dropped.

  Raises:
    DataError: the json cannot be used (names the file and record/position).
  """
  images, categories, report = coco_json.load_instances(json_path, image_dir)
  if verbose:
    print(report.summary(), flush=True)
  return GroundTruth(json_path, image_dir,
                     coco_from_dataset(coco_dataset(images, categories)),
                     images, report)


def coverage(ground_truth: GroundTruth, scored_ids: Iterable[int],
             left_out: LoadReport, not_built: Optional[list] = None) -> dict:
  """What an evaluation scored and left out, for its figures.

  Args:
    ground_truth: the checked split.
    scored_ids: the image ids scored.
    left_out: the images left out (MISSING_FILE, UNREADABLE_FILE, SIZE_MISMATCH).
    not_built: per patch, images the json has but the TFDS split lacks for
      another reason (built from an older json): their file names.
  Returns:
    {'images_scored', 'objects_scored', 'crowd_regions', 'images_left_out':
    {reason: [file (detail)]}, 'ground_truth': the json checks' report}.
  """
  scored_ids = sorted(set(scored_ids))
  objects, crowd = ground_truth.object_counts(scored_ids)
  figures = {'images_scored': len(scored_ids), 'objects_scored': objects,
             'crowd_regions': crowd,
             'images_left_out': {reason: list(left_out.items[reason])
                                 for reason in left_out.counts},
             'ground_truth': ground_truth.report.as_dict()}
  if not_built:
    figures['images_not_in_tfds'] = list(not_built)
  return figures


def skipped_line(figures: dict) -> str:
  """'2 images skipped, not scored: file missing: a.jpg; unreadable ...: b.jpg'
  from the `coverage` figures ('' when none was left out)."""
  left_out = figures['images_left_out']
  count = sum(len(names) for names in left_out.values())
  if not count:
    return ''
  reasons = '; '.join(
      f"{reason.removeprefix('image skipped: ')}: {', '.join(names[:3])}"
      + (', ...' if len(names) > 3 else '')
      for reason, names in left_out.items())
  return f"{counted(count, 'image')} skipped, not scored: {reasons}"


def coverage_line(figures: dict) -> str:
  """'scored 3 images, 7 objects (1 crowd region ignored); left out: ...'."""
  line = (f"scored {counted(figures['images_scored'], 'image')}, "
          f"{counted(figures['objects_scored'], 'object')}")
  if figures['crowd_regions']:
    line += f" ({counted(figures['crowd_regions'], 'crowd region')} ignored)"
  left = [f'{reason}: {", ".join(names)}'
          for reason, names in figures['images_left_out'].items()]
  left += ([f"not in the TFDS build (delete it to rebuild): "
            f"{', '.join(figures['images_not_in_tfds'])}"]
           if figures.get('images_not_in_tfds') else [])
  line += '; left out: ' + ('; '.join(left) if left else 'nothing')
  line += f"; ground truth: {figures['ground_truth']['summary']}"
  return line
