"""What the COCO json checks left out or changed, counted and named.

Every path that reads a COCO json (TFDS build for training, per-image and
per-patch evaluation) reports through one `LoadReport`, so a defect is
worded and counted the same way everywhere. Each reason belongs to one tally
(what was affected and what happened to it), and the summary counts per
tally: one dropped annotation reads "1 annotation dropped", whatever else it
leaves behind (an image without objects is a note, not a drop), and a defect
is counted once (polygon parts dropped with their annotation are named in
its line, not tallied apart). `counted` words every count ("14 categories").
"""

import collections
import dataclasses

# Reasons a record is dropped, skipped or changed (keys of LoadReport.counts).
# Annotations dropped (the rest of the json is used).
POLYGON_TOO_FEW_POINTS = 'polygon part with fewer than 3 points dropped'
POLYGON_ODD_COORDINATES = 'polygon part with an odd number of coordinates dropped'
NO_VALID_POLYGON = ('annotation dropped: no usable polygon part (odd coordinate '
                    'count or fewer than 3 points)')
BAD_BOX = 'annotation dropped: zero-area or negative box'
BOX_OUTSIDE_IMAGE = 'annotation dropped: box outside the image'
NOT_FINITE = 'annotation dropped: NaN or infinite number'
BAD_AREA = 'annotation dropped: negative area'
BAD_RLE_SIZE = 'annotation dropped: RLE size differs from the image size'
BAD_RLE_COUNTS = 'annotation dropped: RLE counts do not cover the image'
EMPTY_MASK = 'annotation dropped: mask has no pixels'
UNKNOWN_IMAGE = 'annotation dropped: unknown image id'
UNKNOWN_CATEGORY = 'annotation dropped: unknown category id'
DUPLICATE_ANNOTATION = 'annotation dropped: duplicate annotation id'
# Images left out (their annotations with them).
MISSING_FILE = 'image skipped: file missing'
UNREADABLE_FILE = 'image skipped: unreadable (truncated or not an image)'
SIZE_MISMATCH = 'image skipped: file size differs from the json'
# Changes and notes: nothing is lost.
CONVERTED = 'image re-encoded to baseline RGB JPEG'
IMAGE_WITHOUT_OBJECTS = 'image without objects (kept)'
CATEGORY_WITHOUT_OBJECTS = 'category without objects'

# reason -> (what it counts, what happened): the summary's tallies.
TALLY = {
    POLYGON_TOO_FEW_POINTS: ('polygon part', 'dropped'),
    POLYGON_ODD_COORDINATES: ('polygon part', 'dropped'),
    **{reason: ('annotation', 'dropped') for reason in (
        NO_VALID_POLYGON, BAD_BOX, BOX_OUTSIDE_IMAGE, NOT_FINITE, BAD_AREA,
        BAD_RLE_SIZE, BAD_RLE_COUNTS, EMPTY_MASK, UNKNOWN_IMAGE,
        UNKNOWN_CATEGORY, DUPLICATE_ANNOTATION)},
    **{reason: ('image', 'skipped') for reason in (
        MISSING_FILE, UNREADABLE_FILE, SIZE_MISMATCH)},
    CONVERTED: ('image', 're-encoded'),
    IMAGE_WITHOUT_OBJECTS: ('image without objects', 'kept'),
    CATEGORY_WITHOUT_OBJECTS: ('category without objects', 'noted'),
}
LOST = ('dropped', 'skipped')  # Tallies of records that are not used.

# How many file names / ids the summary lists per reason.
_SUMMARY_EXAMPLES = 5


# Words after the head noun of a counted phrase ('image without objects').
_PREPOSITIONS = frozenset(('without', 'with', 'of', 'in', 'on', 'from', 'for',
                           'per', 'at', 'by', 'beyond', 'outside', 'inside'))


def _plural(word: str) -> str:
  """'annotation' -> 'annotations', 'category' -> 'categories', 'box' -> 'boxes'."""
  if word.endswith('y') and word[-2:-1] not in ('', 'a', 'e', 'i', 'o', 'u'):
    return word[:-1] + 'ies'
  if word.endswith(('s', 'x', 'z', 'ch', 'sh')):
    return word + 'es'
  return word + 's'


def counted(count: int, noun: str) -> str:
  """'1 annotation', '2 annotations', '3 images without objects',
  '5 crowd regions', '14 categories without objects'.

  `noun` is a singular noun phrase: the word before its first preposition
  (else its last word) takes the plural.
  """
  if count == 1:
    return f'1 {noun}'
  words = noun.split(' ')
  head = next((i for i, word in enumerate(words) if word in _PREPOSITIONS),
              len(words)) - 1
  head = max(head, 0)
  words[head] = _plural(words[head])
  return f'{count} ' + ' '.join(words)


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
    if reason not in TALLY:
      raise ValueError(f'unknown reason {reason!r}')
    self.counts[reason] += 1
    self.items[reason].append(item)

  def tallies(self) -> dict[tuple[str, str], int]:
    """{(noun, action): count}, e.g. {('annotation', 'dropped'): 2}."""
    totals = collections.Counter()
    for reason, count in self.counts.items():
      totals[TALLY[reason]] += count
    return dict(totals)

  def lost(self, noun: str) -> int:
    """How many records of a kind ('annotation', 'image') are not used."""
    return sum(count for (what, action), count in self.tallies().items()
               if what == noun and action in LOST)

  def headline(self) -> str:
    """'1 annotation dropped, 1 image without objects kept' (or 'all records valid')."""
    if not self.counts:
      return 'all records valid'
    order = list(dict.fromkeys(TALLY.values()))
    tallies = self.tallies()
    return ', '.join(f'{counted(tallies[key], key[0])} {key[1]}'
                     for key in order if key in tallies)

  def summary(self) -> str:
    """A readable multi-line text: the headline, then one line per reason."""
    header = f'{self.source}: ' if self.source else ''
    lines = [f'{header}{self.headline()}' + (':' if self.counts else '.')]
    for reason in sorted(self.counts):
      examples = self.items[reason][:_SUMMARY_EXAMPLES]
      more = self.counts[reason] - len(examples)
      suffix = f', ... ({more} more)' if more > 0 else ''
      lines.append(f'  {self.counts[reason]:6d}  {reason}: {", ".join(examples)}{suffix}')
    return '\n'.join(lines)

  def as_dict(self) -> dict:
    """JSON-ready {'summary', 'counts': {reason: n}, 'items': {reason: [...]}}."""
    return {'summary': self.headline(), 'counts': dict(self.counts),
            'items': {reason: list(self.items[reason]) for reason in self.counts}}
