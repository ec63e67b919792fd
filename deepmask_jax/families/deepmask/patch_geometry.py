"""DeepMask's patch geometry: the one definition of its stride and patch side.

The trunk through layer3 has output stride 16: neighbouring score-map
positions are 16 input pixels apart, and an object window of iSz pixels is
fSz = iSz / 16 cells. A training patch is the object window plus `context`
pixels each side: wSz = iSz + 2 * context (192 in the reference).
"""

STRIDE = 16


def window_size(object_window: int, context: int) -> int:
  """wSz: side of a DeepMask input patch."""
  return int(object_window) + 2 * int(context)


def patch_side(config) -> int:
  """wSz of a config (`config.patch.object_window`, `config.patch.context`)."""
  return window_size(config.patch.object_window, config.patch.context)
