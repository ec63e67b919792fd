"""PyTorch as the optional, benchmark-only dependency of the side-by-side scripts."""

import json
import pathlib


def torch_or_skip(script: str, json_path: str = ''):
  """The torch module, or None after saying (and writing to `json_path`, if
  given, {"skipped": why}) that `script` is skipped because it is absent."""
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    reason = 'torch is not installed (an optional, benchmark-only dependency)'
    print(f'{script}: skipped: {reason}')
    if json_path:
      pathlib.Path(json_path).write_text(json.dumps({'skipped': reason}))
    return None
  return torch
