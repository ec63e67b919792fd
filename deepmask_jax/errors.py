"""Errors a user can act on: bad input data, configs, files and checkpoints.

Every layer may import this module (it imports nothing). The entry points
print such an error as one line naming what is wrong and where, and exit with
status 1; the traceback goes to the log (or the terminal with --verbose).
Anything else is a bug and keeps its traceback.
"""


class InputError(ValueError):
  """Bad input the user can fix: the message names the file, the record or
  position, and what is wrong, in one line."""


class DataError(InputError):
  """A dataset (COCO json, images, TFDS build) that cannot be used."""


class CheckpointError(InputError):
  """A checkpoint or model directory that is missing, damaged or cannot be
  written."""
